"""RequestBook: live requests plus the most recent finished ones, by id, for progress and dismissal."""
from __future__ import annotations

import collections
import threading
from typing import Optional

from ollama_server.engine.generation import Generation
from ollama_server.engine.types import InvalidRequestError

LIVE_STATES = ("queued", "running")


class RequestBook:
    """Remembers every live generation and up to `keep_finished` finished ones."""

    def __init__(self, keep_finished: int = 256):
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._by_id: "collections.OrderedDict[str, Generation]" = collections.OrderedDict()

    def add(self, generation: Generation) -> None:
        """Remember a new generation; InvalidRequestError when a live one already has its id."""
        with self._lock:
            held = self._by_id.get(generation.id)
            if held is not None and held.state in LIVE_STATES:
                raise InvalidRequestError(f"request id '{generation.id}' belongs to a request still running",
                                          param="X-Request-Id")
            self._by_id.pop(generation.id, None)  # a reused id moves to the newest end
            self._by_id[generation.id] = generation
            finished = [key for key, g in self._by_id.items() if g.state not in LIVE_STATES]
            for key in finished[:max(0, len(finished) - self.keep_finished)]:
                del self._by_id[key]  # oldest finished first; live requests are never forgotten

    def live(self) -> list[Generation]:
        """Every queued or running generation, oldest first."""
        with self._lock:
            return [g for g in self._by_id.values() if g.state in LIVE_STATES]

    def get(self, request_id: str) -> Optional[Generation]:
        with self._lock:
            return self._by_id.get(request_id)

    def cancel(self, request_id: str) -> bool:
        """Cancel a live request; False when there is no such live request."""
        generation = self.get(request_id)
        if generation is None or generation.state not in LIVE_STATES:
            return False
        generation.cancel()
        return True
