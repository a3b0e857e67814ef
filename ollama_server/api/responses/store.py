"""Responses kept in memory for previous_response_id and GET/DELETE: bounded in count and in age."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from typing import Optional

from ollama_server.engine.types import Message

MAX_RESPONSES = 512     # the oldest goes first beyond this
MAX_AGE_S = 3600.0      # a response older than this is forgotten (OpenAI keeps them 30 days; we are local)


@dataclass(frozen=True)
class StoredResponse:
    """A finished Response object and the whole conversation it ends (without its instructions)."""

    response: dict
    conversation: tuple[Message, ...]
    stored_at: float


class ResponseStore:
    """A thread-safe LRU-by-insertion map of response id -> StoredResponse, expiring by age."""

    def __init__(self, max_items: int = MAX_RESPONSES, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic):
        self.max_items = max_items
        self.max_age_s = max_age_s
        self.clock = clock
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age_s
        while self._items:
            first = next(iter(self._items.values()))
            if first.stored_at > oldest:
                break
            self._items.popitem(last=False)

    def put(self, response: dict, conversation: tuple[Message, ...]) -> None:
        """Keep a finished response; the oldest ones go when the store is full."""
        with self._lock:
            self._expire()
            self._items.pop(response["id"], None)
            self._items[response["id"]] = StoredResponse(response, conversation, self.clock())
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> Optional[StoredResponse]:
        """The stored response, or None when unknown, expired or deleted."""
        with self._lock:
            self._expire()
            return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        """Forget a response; False when it was not there."""
        with self._lock:
            self._expire()
            return self._items.pop(response_id, None) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)
