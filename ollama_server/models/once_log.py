"""OnceLog: warn about a problem the first time its owner sees it; later sightings go to debug."""
from __future__ import annotations

import collections
import logging
import threading


class OnceLog:
    """Per-owner memory of the last `limit` messages warned about (listings re-read their sources often)."""

    def __init__(self, logger: logging.Logger, limit: int = 256):
        self.logger = logger
        self.limit = limit
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def warn(self, text: str) -> None:
        with self._lock:
            seen = text in self._seen
            self._seen[text] = None
            self._seen.move_to_end(text)
            while len(self._seen) > self.limit:  # bounded: a store of changing names cannot grow it forever
                self._seen.popitem(last=False)
        self.logger.log(logging.DEBUG if seen else logging.WARNING, text)
