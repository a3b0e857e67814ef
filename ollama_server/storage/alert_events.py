"""Alert history: every alert transition as a row of `alert_events`, in the metrics database file.

Like the MetricsStore, a locked or full database never raises: a write that cannot be made is
skipped and reported through `status()` (storage/status.py); a read that fails returns nothing.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any
from typing import Iterable
from typing import Optional


from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.status import WriteResult
from ollama_server.storage.shared_file import SharedFileStore

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_COLUMNS = ("id", "at", "alert", "labels", "old", "new", "severity", "previous_severity", "reason", "value",
            "threshold", "started_at", "summary")


def _finite(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _row(t: Any) -> tuple:
    """One Transition as the columns after `id`."""
    from ollama_server.monitoring.alertmanager import annotations  # monitoring imports storage, not the reverse
    return (float(t.at), t.rule.name, json.dumps(dict(t.labels), sort_keys=True, separators=(",", ":")),
            t.old, t.new, t.severity, t.previous_severity, t.reason, _finite(t.value), _finite(t.threshold),
            float(t.started_at), annotations(t)["summary"])


def _event(row: tuple) -> dict[str, Any]:
    from ollama_server.monitoring.requests_agg import iso_utc
    event = dict(zip(_COLUMNS, row))
    event["labels"] = json.loads(event["labels"] or "{}")
    event["state"] = "resolved" if event["new"] == "resolved" else "firing"
    event["time"] = iso_utc(event["at"])
    event["started"] = iso_utc(event["started_at"])
    return event


class AlertHistory(SharedFileStore):
    """`record(transitions)` in, `recent(limit)` and `active()` out; shares the metrics DB file."""

    label = "alert history"

    def record(self, transitions: Iterable[Any]) -> WriteResult:
        """Store the transitions (monitoring.alerts.Transition); never raises for a locked or full database."""
        rows = [_row(t) for t in transitions]
        if not rows:
            return WriteResult(True, 0)
        try:
            db = self.db
            with immediate(db):
                count = db.conn.executemany(
                    f"INSERT INTO alert_events ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * 12)})",
                    rows).rowcount
        except STORE_ERRORS as exc:
            return self._status.failed("record", exc)
        self._status.succeeded()
        return WriteResult(True, count)

    def prune(self, before: float) -> WriteResult:
        """Forget transitions older than `before`, except each alert's last one (so active() stays right)."""
        try:
            db = self.db
            with immediate(db):
                count = db.conn.execute(
                    "DELETE FROM alert_events WHERE at < ? AND id NOT IN "
                    "(SELECT max(id) FROM alert_events GROUP BY alert, labels)", [before]).rowcount
        except STORE_ERRORS as exc:
            return self._status.failed("prune", exc)
        self._status.succeeded()
        return WriteResult(True, count)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` transitions (at most MAX_LIMIT), newest first."""
        limit = max(0, min(int(limit), MAX_LIMIT))
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM alert_events ORDER BY id DESC LIMIT ?", [limit])
        return [_event(row) for row in rows]

    def active(self) -> list[dict[str, Any]]:
        """Alerts whose last recorded transition is not a resolution, by alert name and labels."""
        rows = self._read(
            f"SELECT {', '.join(_COLUMNS)} FROM alert_events WHERE id IN "
            "(SELECT max(id) FROM alert_events GROUP BY alert, labels) AND new != 'resolved' "
            "ORDER BY alert, labels", [])
        return [_event(row) for row in rows]
