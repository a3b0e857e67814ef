"""Embeddings: tokenize, fit to the embedding context, pack several inputs per decode, pool, L2-normalize."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Optional
from typing import Sequence
from typing import Union

import numpy as np

from ollama_server.engine.backend import EmbeddingShape
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import InvalidRequestError

if TYPE_CHECKING:
    from ollama_server.engine.engine import Engine

EmbedInput = Union[str, Sequence[int]]  # text, or token ids (OpenAI's token-array input)
TOO_LONG = "input length exceeds the context length"  # Ollama's wording, which clients match


@dataclass(frozen=True)
class EmbedResult:
    """Unit-norm vectors in input order, with the tokens evaluated and where the time went."""

    model: str
    embeddings: list[list[float]]
    prompt_tokens: int
    load_s: float
    total_s: float
    decodes: int          # embedding decodes this request took (fewer than inputs when batched)
    dimensions: int       # width of each vector as returned
    truncated: int        # inputs cut to fit the context


def normalize(vector: np.ndarray) -> np.ndarray:
    """L2-normalized copy (as Ollama: divide by max(norm, 1e-12)); NaN or Inf is an engine error."""
    values = np.asarray(vector, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise EngineError("the model produced an embedding with NaN or Inf values")
    return values / max(math.sqrt(float(np.dot(values, values))), 1e-12)


def _tokens(model, item: EmbedInput, index: int) -> list[int]:
    if isinstance(item, str):
        tokens = model.tokenize(item, add_special=True)
    else:
        vocab = model.facts.vocab_size
        bad = next((t for t in item if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"input[{index}]: token id {bad} is outside the vocabulary (0..{vocab - 1})",
                                      param="input")
        tokens = list(item)
    if not tokens:
        raise InvalidRequestError(f"input[{index}] is empty; send at least one token of text", param="input")
    return tokens


def fit(model, inputs: Sequence[EmbedInput], limit: int, truncate: bool) -> tuple[list[list[int]], int]:
    """Token ids per input, cut to `limit` when truncate is on, else a 400 for the first too long; (ids, cut)."""
    fitted, cut = [], 0
    for index, item in enumerate(inputs):
        tokens = _tokens(model, item, index)
        if len(tokens) > limit:
            if not truncate:
                raise InvalidRequestError(f"{TOO_LONG} (input[{index}] has {len(tokens)} tokens; the limit is "
                                          f"{limit}); send truncate to cut it", param="input")
            tokens, cut = tokens[:limit], cut + 1
        fitted.append(tokens)
    return fitted, cut


def pack(sequences: Sequence[Sequence[int]], shape: EmbeddingShape) -> list[list[int]]:
    """Input indices per decode, in order: as many as fit in the decode's tokens and sequences."""
    batches: list[list[int]] = []
    used = 0
    for index, tokens in enumerate(sequences):
        if not batches or used + len(tokens) > shape.max_batch_tokens or len(batches[-1]) >= shape.max_sequences:
            batches.append([])
            used = 0
        batches[-1].append(index)
        used += len(tokens)
    return batches


def check_dimensions(dimensions: Optional[int], width: int) -> int:
    """The returned width: `dimensions` when 1..width (a Matryoshka-style cut), the model's width when None."""
    if dimensions is None:
        return width
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= width:
        raise InvalidRequestError(f"dimensions must be between 1 and this model's embedding size ({width}), "
                                  f"got {dimensions}", param="dimensions")
    return dimensions


def embed(engine: "Engine", model: Optional[str], inputs: Sequence[EmbedInput], truncate: bool = True,
          dimensions: Optional[int] = None, num_ctx: Optional[int] = None) -> EmbedResult:
    """Embed `inputs` on a model (loaded on demand): one vector per input, unit norm, in input order."""
    started = time.monotonic()
    spec = engine.resolve(model)
    runner, load_s = engine.pool.runner_for(spec)
    loaded = runner.model
    shape = loaded.embedding_shape()
    width = check_dimensions(dimensions, shape.n_embd)
    # An input must fit one decode (a non-causal model needs all its tokens in one ubatch); num_ctx may lower it.
    limit = min(shape.max_batch_tokens, num_ctx or shape.max_batch_tokens)
    sequences, cut = fit(loaded, inputs, limit, truncate)
    vectors: list[list[float]] = [[] for _ in sequences]
    decodes = 0
    for indices in pack(sequences, shape):
        pooled = loaded.embed_batch([sequences[i] for i in indices])
        decodes += 1
        for index, vector in zip(indices, pooled):
            unit = normalize(vector)
            if width < len(unit):  # cut, then renormalize (Ollama and OpenAI's dimensions)
                unit = normalize(unit[:width])
            vectors[index] = [float(v) for v in unit.astype(np.float32)]
    runner.last_used = time.monotonic()  # an embedding is a use: the keep-alive clock restarts
    return EmbedResult(model=spec.name, embeddings=vectors, prompt_tokens=sum(len(s) for s in sequences),
                       load_s=load_s, total_s=time.monotonic() - started, decodes=decodes, dimensions=width,
                       truncated=cut)
