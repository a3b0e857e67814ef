"""Slot: one llama.cpp sequence of a loaded model, the request it serves and what its KV cache holds."""
from __future__ import annotations

import time
from typing import Any
from typing import Optional
from typing import Sequence

from ollama_server.engine.drafting import DraftController
from ollama_server.engine.generation import Generation
from ollama_server.engine.text_stream import TextPipeline
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import TokenLogprob
from ollama_server.engine.types import Usage


class Slot:
    """A sequence id, the tokens cached for it, and the generation (if any) it is serving."""

    def __init__(self, seq: int):
        self.seq = seq
        self.cached: list[int] = []        # tokens whose KV cells this sequence holds, in order
        self.generation: Optional[Generation] = None
        self.pending: list[int] = []       # prompt tokens not yet evaluated
        self.next_token: Optional[int] = None  # sampled and emitted; evaluated in the next step
        self.sampler: Any = None
        self.text: Optional[TextPipeline] = None
        self.seed: Optional[int] = None
        self.reused = 0
        self.started_at = 0.0
        self.first_token_at: Optional[float] = None
        self.donor: Optional["Slot"] = None  # the slot whose prompt prefix this one waits to copy
        self.shared_length = 0               # how many tokens it will copy from the donor
        self.drafts: Optional[DraftController] = None  # speculative decoding state (None: not drafting)
        self.drafted = 0                     # draft tokens proposed and verified for this request
        self.accepted = 0                    # ... of which accepted

    @property
    def busy(self) -> bool:
        return self.generation is not None

    def common_prefix(self, prompt: Sequence[int]) -> int:
        """How many leading prompt tokens this slot already holds."""
        count = 0
        for cached, wanted in zip(self.cached, prompt):
            if cached != wanted:
                break
            count += 1
        return count

    def start(self, generation: Generation, sampler: Any, seed: int, reused: int,
              drafts: Optional[DraftController] = None) -> None:
        """Take a generation whose first `reused` prompt tokens are already cached here."""
        self.generation = generation
        self.drafts = drafts
        self.drafted = self.accepted = 0
        self.donor, self.shared_length = None, 0
        self.sampler = sampler
        self.seed = seed
        self.reused = reused
        del self.cached[reused:]
        self.pending = list(generation.prompt_tokens[reused:])
        self.next_token = None
        self.text = TextPipeline(generation.request)
        self.started_at = time.monotonic()
        self.first_token_at = None
        generation.started_at = self.started_at
        generation.state = "running"

    def wait_for(self, donor: "Slot", length: int) -> None:
        """Hold this slot's prompt until `donor` has read `length` tokens of it, then copy them."""
        self.donor, self.shared_length = donor, length

    def copied(self, tokens: Sequence[int]) -> None:
        """The first len(tokens) prompt tokens were copied into this slot's cache from another slot's."""
        self.cached = list(tokens)
        self.pending = list(self.generation.prompt_tokens[len(tokens):])
        self.reused = len(tokens)
        self.donor, self.shared_length = None, 0

    def fed(self, tokens: Sequence[int]) -> None:
        """Tokens just evaluated into this sequence's cache."""
        self.cached.extend(tokens)
        if self.pending:
            del self.pending[:len(tokens)]
        else:
            self.next_token = None

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def emit(self, piece: bytes, token: int, logprobs: tuple[TokenLogprob, ...]) -> Chunk:
        """The chunk for one sampled token (its text may be held back: UTF-8, stop strings)."""
        reasoning, text = self.text.feed(piece)
        return Chunk(text=text, reasoning=reasoning, token_ids=(token,), logprobs=logprobs)

    def final_chunk(self, finish_reason: str, stop_kind: str, stop_match) -> Chunk:
        """The last chunk: held-back text, finish reason, usage and timings."""
        generation = self.generation
        reasoning, tail = self.text.finish()
        ended = time.monotonic()
        first = self.first_token_at or ended
        usage = Usage(
            prompt_tokens=len(generation.prompt_tokens),
            completion_tokens=generation.generated,
            cached_tokens=self.reused,
            draft_tokens=self.drafted,
            accepted_draft_tokens=self.accepted,
            queue_s=self.started_at - generation.submitted_at,
            load_s=generation.load_s,
            prompt_eval_s=first - self.started_at,
            eval_s=ended - first,
            total_s=ended - generation.submitted_at,
        )
        return Chunk(text=tail, reasoning=reasoning, finish_reason=finish_reason, stop_kind=stop_kind,
                     stop_match=stop_match, usage=usage, seed=self.seed)

    def clear(self) -> None:
        """Free the slot; the cached tokens stay for prefix reuse."""
        if self.sampler is not None:
            self.sampler.close()
        self.generation = None
        self.sampler = None
        self.drafts = None
        self.donor, self.shared_length = None, 0
        self.pending = []
        self.next_token = None
        self.text = None
