"""Alert silences and acknowledgements: rows of `alert_silences`, in the metrics database file.

A silence quiets an alert (rule name, and a label set that must be a subset of the alert's: `{}` silences
every series of the rule) until `until`. An acknowledgement quiets one exact alert until it resolves: it is
stored with until NULL and holds only while the alert keeps firing in the episode it was made in (the
alert's `started_at`, AlertState.active_since, is not after the ack). `close_acknowledgements()` ends it
when the resolution is delivered. Like AlertHistory, a locked or full database never raises.
"""
from __future__ import annotations

import json
import logging
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Optional


from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.shared_file import SharedFileStore

log = logging.getLogger(__name__)

SILENCED, ACKNOWLEDGED = "silenced", "acknowledged"
_COLUMNS = ("id", "at", "alert", "labels", "kind", "until", "actor", "comment")


def labels_key(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The canonical JSON of a label set, as alert_events stores it."""
    items = labels.items() if isinstance(labels, Mapping) else labels
    return json.dumps({str(k): str(v) for k, v in items}, sort_keys=True, separators=(",", ":"))


def _entry(row: tuple) -> dict[str, Any]:
    from ollama_server.monitoring.requests_agg import iso_utc  # pure helper; storage stays below monitoring
    entry = dict(zip(_COLUMNS, row))
    entry["labels"] = json.loads(entry["labels"] or "{}")
    entry["comment"] = entry["comment"] or ""
    entry["time"] = iso_utc(entry["at"])
    entry["until_time"] = iso_utc(entry["until"]) if entry["until"] is not None else None
    return entry


class AlertSilences(SharedFileStore):
    """silence / acknowledge / expire / unsilence in; active() and state_of() out; shares the metrics DB."""

    label = "alert silences"

    # --- writes -------------------------------------------------------------------------------
    def _insert(self, alert: str, labels: Mapping[str, str], kind: str, until: Optional[float], actor: str,
                comment: str) -> dict[str, Any]:
        now = self.clock()
        row = (now, alert, labels_key(labels), kind, until, actor, comment)
        try:
            db = self.db
            with immediate(db):
                cursor = db.conn.execute(
                    f"INSERT INTO alert_silences ({', '.join(_COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        except STORE_ERRORS as exc:
            # Never raised: the caller gets the entry without an id, and why (the route answers 503).
            result = self._status.failed(kind, exc)
            return {**_entry((None, *row)), "error": result.error}
        self._status.succeeded()
        return _entry((cursor.lastrowid, *row))

    def silence(self, alert: str, labels: Mapping[str, str], seconds: float, actor: str,
                comment: str = "") -> dict[str, Any]:
        """Quiet `alert` (every series whose labels include `labels`) for `seconds`; the stored entry
        (no id, and "error": "locked" | "full" | "error", when the database refused the write)."""
        return self._insert(alert, labels, SILENCED, self.clock() + float(seconds), actor, comment)

    def acknowledge(self, alert: str, labels: Mapping[str, str], actor: str, comment: str = "") -> dict[str, Any]:
        """Quiet exactly this alert until it resolves (until stays None); the stored entry."""
        return self._insert(alert, labels, ACKNOWLEDGED, None, actor, comment)

    def _end(self, where: str, params: list, what: str, now: Optional[float] = None) -> int:
        now = self.clock() if now is None else now
        try:
            db = self.db
            with immediate(db):
                count = db.conn.execute(
                    f"UPDATE alert_silences SET until = ? WHERE ({where}) AND (until IS NULL OR until > ?)",
                    [now, *params, now]).rowcount
        except STORE_ERRORS as exc:
            self._status.failed(what, exc)
            return 0
        self._status.succeeded()
        return count

    def expire(self, alert: str, labels: Mapping[str, str]) -> int:
        """End every silence and acknowledgement of exactly this alert now; how many were active."""
        return self._end("alert = ? AND labels = ?", [alert, labels_key(labels)], "expire")

    def unsilence(self, silence_id: int) -> bool:
        """End one silence or acknowledgement now; False when it is unknown or already over."""
        return self._end("id = ?", [int(silence_id)], "unsilence") > 0

    def close_acknowledgements(self, alert: str, labels: Mapping[str, str] | Iterable[tuple[str, str]],
                               at: Optional[float] = None) -> int:
        """The alert resolved: its acknowledgements end (a later firing is a new episode, not acked)."""
        return self._end("alert = ? AND labels = ? AND kind = 'acknowledged'", [alert, labels_key(labels)],
                         "close acknowledgements", at)

    # --- reads --------------------------------------------------------------------------------
    def get(self, silence_id: int) -> Optional[dict[str, Any]]:
        """One entry by id, active or not."""
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM alert_silences WHERE id = ?", [int(silence_id)])
        return _entry(rows[0]) if rows else None

    def active(self, now: Optional[float] = None) -> list[dict[str, Any]]:
        """Silences not yet over and acknowledgements not yet closed, oldest first."""
        now = self.clock() if now is None else now
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM alert_silences WHERE until IS NULL OR until > ? "
                          "ORDER BY id", [now])
        return [_entry(row) for row in rows]

    def state_of(self, alert: str, labels: Mapping[str, str] | Iterable[tuple[str, str]],
                 now: Optional[float] = None, started_at: Optional[float] = None) -> Optional[dict[str, Any]]:
        """{"kind": "silenced"|"acknowledged", "until", "actor", "id"} when the alert is quiet, else None.

        `started_at` is when the alert's current episode began (AlertState.active_since, Transition.started_at):
        an acknowledgement made before it belongs to an earlier episode and does not count. A silence wins over
        an acknowledgement (it says until when)."""
        now = self.clock() if now is None else now
        wanted = json.loads(labels_key(labels)).items()
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM alert_silences WHERE alert = ? AND "
                          "(until IS NULL OR until > ?) AND at <= ? ORDER BY id DESC", [alert, now, now])
        acked: Optional[dict[str, Any]] = None
        for row in rows:
            entry = _entry(row)
            if entry["kind"] == SILENCED and entry["labels"].items() <= wanted:
                return {"kind": SILENCED, "until": entry["until"], "actor": entry["actor"], "id": entry["id"]}
            if (entry["kind"] == ACKNOWLEDGED and acked is None and entry["labels"].items() == wanted
                    and (started_at is None or entry["at"] >= started_at)):
                acked = {"kind": ACKNOWLEDGED, "until": None, "actor": entry["actor"], "id": entry["id"]}
        return acked
