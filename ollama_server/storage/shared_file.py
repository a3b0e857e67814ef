"""The base of the small stores that live in the metrics database file beside the samples: per-thread
connections (the schema migrated once per process), a clock, and a status of the last write."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import sqlite_utils

from ollama_server.storage import migrations
from ollama_server.storage.db import BUSY_TIMEOUT_S
from ollama_server.storage.db import PerThreadDatabase
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.status import StoreStatus

log = logging.getLogger(__name__)


class SharedFileStore:
    """Connections, clock and status for one table family in the metrics DB file; `label` names it."""

    label = "store"

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time, *,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.clock = clock
        self.busy_timeout_s = busy_timeout_s
        self._connections = PerThreadDatabase(self.path, migrations.apply, busy_timeout_s=busy_timeout_s)
        self._status = StoreStatus(self.label, clock)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (opened, and the schema migrated, on first use); may raise STORE_ERRORS."""
        return self._connections.get()

    def close(self) -> None:
        """Close the calling thread's connection."""
        self._connections.close()

    def _read(self, sql: str, params: list) -> list:
        """Rows of a query; none (logged) when the file cannot be read: a page shows no data, it never fails."""
        try:
            return self.db.execute(sql, params).fetchall()
        except STORE_ERRORS as exc:
            log.warning("%s: read failed, returning no data (%s)", self.label, exc)
            return []

    def status(self) -> dict:
        """{"state": "ok" | "locked" | "full" | "error", "message", ...} of the last write."""
        return self._status.as_dict()
