"""Results of the per-model benchmark: rows of `model_benchmarks`, in the metrics database file.

Like the other stores, a locked or full database never raises: a write that cannot be made returns
None (and shows in `status()`), a read that fails returns nothing.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from typing import Optional


from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.shared_file import SharedFileStore

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


class BenchmarkStore(SharedFileStore):
    """`add(result)` in; `latest(model)` and `history(model, limit)` out; shares the metrics DB file."""

    label = "model benchmarks"

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
