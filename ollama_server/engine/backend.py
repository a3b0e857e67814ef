"""The model back-end protocol: what the engine's scheduler needs from a loaded model, nothing about llama.cpp."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Optional
from typing import Protocol
from typing import Sequence

from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: per-slot context, slots, and where its layers go."""

    n_ctx: int                 # context per slot
    n_slots: int = 1           # sequences decoded together (continuous batching)
    n_batch: int = 512
    n_threads: int = 1
    n_gpu_layers: int = -1
    split_mode: str = "layer"
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModelFacts:
    """What a loaded model reports about itself."""

    architecture: str
    trained_context: int
    context_length: int        # per slot: what one request may use
    chat_template: str | None
    bos_text: str
    eos_text: str
    vocab_size: int
    # GPU offload, as applied at load: whether this llama.cpp build can offload at all (a CPU-only
    # build cannot, whatever gpu_layers says), and the n_gpu_layers it was given (-1: all).
    gpu_offload_supported: bool = False
    gpu_layers: int = 0


@dataclass(frozen=True)
class DecodeEntry:
    """Tokens of one sequence in a batch, starting at `start_pos`; logits wanted for its last token? With
    `all_logits` (a token and its draft, speculative decoding), every token gets a logits row; the rows are
    consecutive and end at the one decode() returns for the entry."""

    seq: int
    tokens: Sequence[int]
    start_pos: int
    want_logits: bool
    all_logits: bool = False


@dataclass(frozen=True)
class EmbeddingShape:
    """What one embedding decode takes: vector width, tokens and inputs per decode, and the pooling used."""

    n_embd: int
    max_batch_tokens: int      # tokens in one decode; also the longest single input
    max_sequences: int         # inputs in one decode (one llama.cpp seq_id each)
    pooling: str               # "mean" | "cls" | "last"


class LoadedModel(Protocol):
    """A model in memory with `n_slots` sequences, driven by one scheduler thread."""

    facts: ModelFacts
    n_slots: int
    batch_capacity: int

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """Token ids for `text`; `add_special` adds BOS where the model wants one."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text for token ids."""

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character)."""

    def is_end_of_generation(self, token: int) -> bool:
        """True for EOS / end-of-turn tokens."""

    def decode(self, entries: Sequence[DecodeEntry]) -> list[Optional[int]]:
        """Evaluate one batch; per entry, the logits row of its last token (None if not wanted)."""

    def forget(self, seq: int, from_pos: int) -> bool:
        """Drop a sequence's cached tokens from `from_pos` on."""

    def can_continue(self, seq: int, at: int) -> bool:
        """Whether a sequence's cache still holds what a token at position `at` attends to (sliding-window
        layers drop cells that fall out of their window; the first `at` cached tokens can then not be reused)."""

    def copy_sequence(self, source: int, target: int) -> None:
        """Make `target`'s cache a copy of `source`'s (applied before the next decode); cut it with forget()."""

    def can_draft(self, sampler: Any) -> bool:
        """Whether this sampler can verify draft tokens (speculative decoding)."""

    def new_sampler(self, sampling: SamplingParams, prompt: Sequence[int], min_tokens: int = 0,
                    ignore_eos: bool = False, grammar: Optional[str] = None) -> Any:
        """Sampler state (with .close()) for one request, constrained by a GBNF `grammar` if given;
        may raise InvalidRequestError when the grammar cannot be built."""

    def sample(self, sampler: Any, row: int, generated: int, min_tokens: int, draft: Optional[int] = None) -> int:
        """The next token from logits row `row`; given a `draft` token it returns the draft when verification
        keeps it (greedy: it is the argmax; sampled: kept with its probability), so the output distribution is
        the one without drafting."""

    def logprobs(self, row: int, token: int, top_n: int) -> TokenLogprob:
        """Log-probability of `token` under logits row `row`, and the top_n alternatives."""

    def embedding_shape(self) -> EmbeddingShape:
        """The embedding context's limits (known without creating it); InvalidRequestError if it cannot embed."""

    def embed_batch(self, sequences: Sequence[Sequence[int]]) -> list[Sequence[float]]:
        """Pooled, unnormalized vectors of several token sequences in ONE decode of the embedding context
        (created on first use, apart from the generation context); safe to call from any thread."""

    embed_decodes: int  # embedding decodes run so far (tests and the benchmark read it)

    def score(self, tokens: Sequence[int], first: int) -> list[float]:
        """Natural-log probabilities of tokens[first:] (1 <= first < len(tokens)), each given every token before
        it, on a scoring context apart from the generation context (created on first use); safe from any thread."""

    def close(self) -> None:
        """Free the model's memory."""


class Backend(Protocol):
    """Loads models from GGUF files and compiles constrained-output grammars."""

    def load(self, path: str, options: LoadOptions) -> LoadedModel:
        """Load the GGUF at `path`; raises on failure."""

    def json_schema_grammar(self, schema: dict, field: str) -> str:
        """GBNF text for a JSON schema ({} = any JSON value); InvalidRequestError naming `field` if unsupported."""

    def check_grammar(self, grammar: str, field: str) -> None:
        """Raise InvalidRequestError naming `field` unless the grammar can be built (without risk to the process)."""

    def close(self) -> None:
        """Release what the backend holds besides loaded models."""
