"""Scoring: how likely a model finds a continuation after a request's prompt (negative log-likelihood)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollama_server.engine.records import recorded_call
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import InvalidRequestError

if TYPE_CHECKING:
    from ollama_server.engine.engine import Engine


@dataclass(frozen=True)
class ScoreResult:
    """A continuation's token count, its summed and mean negative log-likelihood (nats), and per-token logprobs."""

    model: str
    tokens: int                    # continuation tokens scored
    nll: float                     # sum of -log p over them
    mean_nll: float                # nll / tokens
    prompt_tokens: int             # tokens of the rendered prompt they were conditioned on
    logprobs: tuple[float, ...]    # log p of each continuation token, in order


def score(engine: "Engine", request: GenerateRequest, continuation: str) -> ScoreResult:
    """Score `continuation` after `request`'s prompt on its model (loaded on demand); one record per call."""
    return recorded_call(engine.records, lambda: _score(engine, request, continuation), dialect=request.dialect,
                         endpoint="score", model=request.model or "",
                         prompt_tokens=lambda result: result.prompt_tokens + result.tokens,
                         model_of=lambda result: result.model)


def _score(engine: "Engine", request: GenerateRequest, continuation: str) -> ScoreResult:
    if not isinstance(continuation, str) or not continuation:
        raise InvalidRequestError("continuation is empty; send the text to score", param="continuation")
    # The prompt exactly as a generation of this request would be fed (chat template, BOS, infill).
    name, prompt = engine.prompt_tokens(request)
    runner, _ = engine.pool.runner_for(engine.resolve(name), request.num_ctx)
    model = runner.model
    if not prompt:
        raise InvalidRequestError("the prompt has no tokens; the first continuation token needs one before it",
                                  param="prompt")
    tokens = model.tokenize(continuation, add_special=False)
    if not tokens:
        raise InvalidRequestError("continuation has no tokens; send the text to score", param="continuation")
    context = min(request.num_ctx or model.facts.context_length, model.facts.context_length)
    if len(prompt) + len(tokens) > context:
        raise InvalidRequestError(
            f"the prompt ({len(prompt)} tokens) and the continuation ({len(tokens)} tokens) exceed this model's "
            f"context length of {context} tokens", param="continuation", code="context_length_exceeded")
    runner.last_used = time.monotonic()  # a use: the keep-alive clock restarts (again once done)
    logprobs = tuple(float(value) for value in model.score(prompt + tokens, len(prompt)))
    runner.last_used = time.monotonic()
    if len(logprobs) != len(tokens):
        raise EngineError(f"the back-end scored {len(logprobs)} tokens of {len(tokens)}")
    nll = -math.fsum(logprobs)
    if not math.isfinite(nll):
        raise EngineError("the model produced non-finite log-probabilities")
    return ScoreResult(model=name, tokens=len(tokens), nll=nll, mean_nll=nll / len(tokens),
                       prompt_tokens=len(prompt), logprobs=logprobs)
