"""The model back-end protocol: what the engine needs from a loaded model, nothing about llama.cpp."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from typing import Iterator
from typing import Optional
from typing import Protocol
from typing import Sequence

from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: context size and where its layers go."""

    n_ctx: int
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
    context_length: int
    chat_template: str | None
    bos_text: str
    eos_text: str
    vocab_size: int


class LoadedModel(Protocol):
    """A model in memory, ready to tokenize and generate."""

    facts: ModelFacts

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """Token ids for `text`; `add_special` adds BOS where the model wants one."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text for token ids."""

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character)."""

    def is_end_of_generation(self, token: int) -> bool:
        """True for EOS / end-of-turn tokens."""

    def cached_prefix(self, prompt: Sequence[int]) -> int:
        """How many leading prompt tokens are already in the KV cache (reused, not recomputed)."""

    def generate(self, prompt: Sequence[int], sampling: SamplingParams,
                 ban_end_of_generation: Optional[Callable[[], bool]] = None,
                 reuse_prefix: bool = True) -> Iterator[int]:
        """Evaluate the prompt, then yield sampled tokens until the caller stops iterating.

        While ban_end_of_generation() is true, end-of-generation tokens cannot be sampled.
        With reuse_prefix false the whole prompt is evaluated afresh (bit-for-bit reproducible).
        """

    def logprobs(self, token: int, top_n: int) -> TokenLogprob:
        """Log-probability of the token just yielded, and the top_n alternatives."""

    def close(self) -> None:
        """Free the model's memory."""


class Backend(Protocol):
    """Loads models from GGUF files."""

    def load(self, path: str, options: LoadOptions) -> LoadedModel:
        """Load the GGUF at `path`; raises on failure."""

