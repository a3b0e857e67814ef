"""Configuration history: every applied runtime configuration as a row of `config_versions`, in the metrics DB.

Unlike the metrics store, a failure here is raised (ConfigStoreError): a change that cannot be versioned is
not applied, so that every configuration that ever ran can be rolled back to.
"""
from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Mapping
from typing import Optional


from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.status import error_kind
from ollama_server.storage.shared_file import SharedFileStore

MAX_LIMIT = 1000
_COLUMNS = ("id", "at", "actor", "source", "changes", "values", "note", "rollback_of")
_SELECT = "SELECT id, at, actor, source, changes, \"values\", note, rollback_of FROM config_versions"


class ConfigStoreError(RuntimeError):
    """The configuration history cannot be read or written now (locked, full, unwritable)."""

    def __init__(self, op: str, exc: BaseException):
        self.kind = error_kind(exc)
        super().__init__(f"configuration history {self.kind}: {op} failed ({exc})")


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(row: tuple) -> dict[str, Any]:
    version = dict(zip(_COLUMNS, row))
    version["changes"] = json.loads(version["changes"] or "{}")
    version["values"] = json.loads(version["values"] or "{}")
    version["note"] = version["note"] or ""
    version["time"] = _iso(version["at"])
    return version


class ConfigVersions(SharedFileStore):
    """`record(...)` in, `list(limit)`, `get(id)` and `latest()` out; shares the metrics DB file."""

    label = "configuration versions"

    def record(self, actor: str, source: str, changes: Mapping[str, Any], values: Mapping[str, Any],
               note: str = "", rollback_of: Optional[int] = None) -> dict[str, Any]:
        """Store one version and return it as read back; ConfigStoreError when the database refuses."""
        at = float(self.clock())
        row = (at, actor, source, json.dumps(dict(changes), sort_keys=True), json.dumps(dict(values), sort_keys=True),
               note, rollback_of)
        try:
            db = self.db
            with immediate(db):
                cursor = db.conn.execute(
                    "INSERT INTO config_versions (at, actor, source, changes, \"values\", note, rollback_of) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                version_id = cursor.lastrowid
        except STORE_ERRORS as exc:
            raise ConfigStoreError("record", exc) from None
        return _version((version_id, *row))

    def _read(self, sql: str, params: list) -> list:
        try:
            return self.db.execute(sql, params).fetchall()
        except STORE_ERRORS as exc:
            raise ConfigStoreError("read", exc) from None

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` versions (at most MAX_LIMIT), newest first."""
        limit = max(0, min(int(limit), MAX_LIMIT))
        return [_version(row) for row in self._read(f"{_SELECT} ORDER BY id DESC LIMIT ?", [limit])]

    def get(self, version_id: int) -> Optional[dict[str, Any]]:
        """One version by id, or None."""
        rows = self._read(f"{_SELECT} WHERE id = ?", [int(version_id)])
        return _version(rows[0]) if rows else None

    def latest(self) -> Optional[dict[str, Any]]:
        """The newest version, or None when nothing was ever recorded."""
        rows = self.list(1)
        return rows[0] if rows else None
