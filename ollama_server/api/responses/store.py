"""Responses kept in memory for previous_response_id and GET/DELETE: bounded in count, size and age."""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable
from typing import Optional

from ollama_server.engine.types import Message

MAX_RESPONSES = 512     # the oldest goes first beyond this
MAX_AGE_S = 3600.0      # a response older than this is forgotten (OpenAI keeps them 30 days; we are local)
# Each may hold a conversation near the body limit: 512 of them could be a GiB without a byte bound.
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class StoredResponse:
    """A finished Response object and the whole conversation it ends (without its instructions)."""

    response: dict
    conversation: tuple[Message, ...]
    stored_at: float
    size: int = 0  # its estimated bytes, counted against the store's budget


def estimated_size(response: dict, conversation: tuple[Message, ...]) -> int:
    """Roughly the bytes a stored response holds: its JSON and its conversation's text."""
    return len(json.dumps(response, default=str)) + sum(len(repr(message)) for message in conversation)


class ResponseStore:
    """A thread-safe LRU-by-insertion map of response id -> StoredResponse, expiring by age."""

    def __init__(self, max_items: int = MAX_RESPONSES, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic, max_bytes: int = MAX_BYTES):
        self.max_items = max_items
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._bytes = 0
        self.clock = clock
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age_s
        while self._items:
            first = next(iter(self._items.values()))
            if first.stored_at > oldest:
                break
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, dropped = self._items.popitem(last=False)
        self._bytes -= dropped.size

    def _pop(self, response_id: str) -> Optional[StoredResponse]:
        item = self._items.pop(response_id, None)
        if item is not None:
            self._bytes -= item.size
        return item

    def put(self, response: dict, conversation: tuple[Message, ...]) -> None:
        """Keep a finished response; the oldest ones go when the store is over its count or bytes (the newest
        always stays, so the conversation just answered can be continued)."""
        item = StoredResponse(response, conversation, self.clock(), estimated_size(response, conversation))
        with self._lock:
            self._expire()
            self._pop(response["id"])
            self._items[response["id"]] = item
            self._bytes += item.size
            while len(self._items) > 1 and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                self._drop_oldest()

    def get(self, response_id: str) -> Optional[StoredResponse]:
        """The stored response, or None when unknown, expired or deleted."""
        with self._lock:
            self._expire()
            return self._items.get(response_id)

    def delete(self, response_id: str) -> bool:
        """Forget a response; False when it was not there."""
        with self._lock:
            self._expire()
            return self._pop(response_id) is not None

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)
