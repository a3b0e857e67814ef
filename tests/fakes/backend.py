"""A scripted stand-in for llama.cpp: each character is a token, replies come from a queue."""
from __future__ import annotations

import threading
import time
from typing import Iterator
from typing import Sequence

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.backend import ModelFacts
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob

EOS = 0


class FakeModel:
    """Tokens are code points (EOS is 0); generate() replays the next enqueued reply."""

    def __init__(self, backend: "FakeBackend", path: str, options: LoadOptions):
        self.backend = backend
        self.path = path
        self.options = options
        self.facts = ModelFacts(architecture="fake", trained_context=options.n_ctx, context_length=options.n_ctx,
                                chat_template=None, bos_text="", eos_text="", vocab_size=0x110000)
        self.closed = False

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def token_bytes(self, token: int) -> bytes:
        return chr(token).encode("utf-8")

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOS

    def cached_prefix(self, prompt: Sequence[int]) -> int:
        return 0

    def generate(self, prompt: Sequence[int], sampling: SamplingParams,
                 ban_end_of_generation=None, reuse_prefix: bool = True) -> Iterator[int]:
        self.backend.history.append((self.path, list(prompt), sampling))
        reply, end = self.backend.next_reply()
        for char in reply:
            yield self._next(ord(char))
        if end and not (ban_end_of_generation and ban_end_of_generation()):
            yield self._next(EOS)
        while True:  # past the script the model keeps talking, as a real one would
            yield self._next(ord("."))

    def _next(self, token: int) -> int:
        """Each token waits for the gate (tests hold it to keep a request running) and the delay."""
        self.backend.gate.wait()
        if self.backend.token_delay_s:
            time.sleep(self.backend.token_delay_s)
        return token

    def logprobs(self, token: int, top_n: int) -> TokenLogprob:
        """The fake is always certain: logprob 0 for the chosen character."""
        top = tuple((token, chr(token), 0.0) for _ in range(min(top_n, 1)))
        return TokenLogprob(token=token, text=chr(token), logprob=0.0, top=top)

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    """Backend whose models replay `enqueue()`d replies; `history` records every generate call."""

    def __init__(self, token_delay_s: float = 0.0):
        self.replies: list[tuple[str, bool]] = []
        self.history: list = []
        self.loaded: list[FakeModel] = []
        self.token_delay_s = token_delay_s
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def enqueue(self, text: str, end: bool = True) -> None:
        """The next generate() yields `text`, then EOS if `end`."""
        with self._lock:
            self.replies.append((text, end))

    def next_reply(self) -> tuple[str, bool]:
        with self._lock:
            return self.replies.pop(0) if self.replies else ("", True)

    def load(self, path: str, options: LoadOptions) -> FakeModel:
        model = FakeModel(self, path, options)
        self.loaded.append(model)
        return model
