"""Generation: the handle a request thread iterates for chunks and may cancel."""
from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Callable
from typing import Iterator
from typing import Optional

from ollama_server.engine.types import Chunk
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import Usage

_ids = itertools.count(1)


class Generation:
    """An iterator of Chunks fed by an engine thread; `.cancel()` stops the work at the next token."""

    def __init__(self, request: GenerateRequest, model: str, prompt_tokens: list[int],
                 max_tokens: int, deadline: float, request_id: str | None = None):
        self.request = request
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.deadline = deadline
        self.id = request_id or f"req-{next(_ids)}"
        self.created = time.time()
        self.submitted_at = time.monotonic()
        self.started_at: Optional[float] = None
        self.generated = 0
        self.load_s = 0.0
        self.grammar: Optional[str] = None  # GBNF compiled from the request's schema, checked at submit
        self.state = "queued"  # queued | running | done | cancelled | failed
        self.usage: Optional[Usage] = None            # from the final chunk
        self.finish_reason: Optional[str] = None      # from the final chunk
        self.error: Optional[EngineError] = None      # why it failed
        self.on_end: Optional[Callable[["Generation"], None]] = None  # called once when the engine lets go
        self._chunks: "queue.Queue[Chunk | EngineError | None]" = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()

    # --- request side -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Chunk]:
        while True:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                self.cancel()
                raise RequestTimeoutError("request timed out")
            try:
                item = self._chunks.get(timeout=min(wait, 1.0))
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, EngineError):
                raise item
            yield item

    def cancel(self) -> None:
        """Ask the engine to stop; safe to call at any time, any number of times."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until the engine has let go of this generation."""
        return self._finished.wait(timeout)

    # --- engine side --------------------------------------------------------------------------
    def put(self, chunk: Chunk) -> None:
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            self.usage = chunk.usage
        self._chunks.put(chunk)

    def fail(self, error: EngineError) -> None:
        self.state = "failed"
        self.error = error
        self._chunks.put(error)
        self._end()

    def finish(self, state: str = "done") -> None:
        self.state = state
        self._chunks.put(None)
        self._end()

    def _end(self) -> None:
        if self._finished.is_set():
            return
        self._finished.set()
        if self.on_end is not None:
            self.on_end(self)

    def progress(self) -> dict:
        """What a progress endpoint shows about this request."""
        return {
            "request_id": self.id,
            "model": self.model,
            "dialect": self.request.dialect,
            "endpoint": self.request.endpoint,
            "state": self.state,
            "tokens_generated": self.generated,
            "max_tokens": self.max_tokens,
            "prompt_tokens": len(self.prompt_tokens),
        }
