"""Results of the per-model benchmark: rows of `model_benchmarks`, in the metrics database file.

Like the other stores, a locked or full database never raises: a write that cannot be made returns
None (and shows in `status()`), a read that fails returns nothing.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Optional

import sqlite_utils

from ollama_server.storage import migrations
from ollama_server.storage.db import BUSY_TIMEOUT_S
from ollama_server.storage.db import PerThreadDatabase
from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.status import StoreStatus

log = logging.getLogger(__name__)
MAX_LIMIT = 1000
_COLUMNS = ("id", "at", "model", "status", "prompt_tokens", "completion_tokens", "prompt_tokens_per_second",
            "decode_tokens_per_second", "ttft_s", "duration_s", "settings", "error")


def _result(row: tuple) -> dict[str, Any]:
    from ollama_server.monitoring.requests_agg import iso_utc  # pure helper
    result = dict(zip(_COLUMNS, row))
    result["settings"] = json.loads(result["settings"] or "{}")
    result["date"] = iso_utc(result["at"])
    return result


class BenchmarkStore:
    """`add(result)` in; `latest(model)` and `history(model, limit)` out; shares the metrics DB file."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time, *,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.clock = clock
        self._connections = PerThreadDatabase(self.path, migrations.apply, busy_timeout_s=busy_timeout_s)
        self._status = StoreStatus("model benchmarks", clock)

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection; may raise STORE_ERRORS."""
        return self._connections.get()

    def close(self) -> None:
        """Close the calling thread's connection."""
        self._connections.close()

    def status(self) -> dict:
        """{"state": "ok" | "locked" | "full" | "error", ...} as the other stores'."""
        return self._status.as_dict()

    def add(self, result: dict[str, Any]) -> Optional[int]:
        """Store one result (the _COLUMNS after id; `at` defaults to now); its id, None when not stored."""
        values = {**result, "at": result.get("at", self.clock()),
                  "settings": json.dumps(result.get("settings") or {}, sort_keys=True)}
        row = [values.get(column) for column in _COLUMNS[1:]]
        try:
            db = self.db
            with immediate(db):
                cursor = db.conn.execute(
                    f"INSERT INTO model_benchmarks ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * 11)})", row)
        except STORE_ERRORS as exc:
            self._status.failed("add", exc)
            return None
        self._status.succeeded()
        return cursor.lastrowid

    def _read(self, sql: str, params: list) -> list:
        try:
            return self.db.execute(sql, params).fetchall()
        except STORE_ERRORS as exc:
            log.warning("model benchmarks: read failed, returning no data (%s)", exc)
            return []

    def history(self, model: str, limit: int = 20) -> list[dict[str, Any]]:
        """The model's newest `limit` results (at most MAX_LIMIT), newest first."""
        limit = max(0, min(int(limit), MAX_LIMIT))
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM model_benchmarks WHERE model = ? "
                          "ORDER BY at DESC, id DESC LIMIT ?", [model, limit])
        return [_result(row) for row in rows]

    def latest(self, model: str) -> Optional[dict[str, Any]]:
        """The model's newest result, or None."""
        rows = self.history(model, 1)
        return rows[0] if rows else None
