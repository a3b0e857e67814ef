"""The metrics store: raw samples for a day, one-minute roll-ups for a month, one series query."""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from typing import Iterable
from typing import Mapping
from typing import Optional

import sqlite_utils

from ollama_server.storage import migrations
from ollama_server.storage.db import BUSY_TIMEOUT_S
from ollama_server.storage.db import PerThreadDatabase
from ollama_server.storage.db import immediate
from ollama_server.storage.status import STORE_ERRORS
from ollama_server.storage.status import StoreStatus
from ollama_server.storage.status import WriteResult

log = logging.getLogger(__name__)

Point = tuple[float, float]  # (bucket start or sample time, value)
MINUTE = 60.0
# Each roll-up run recomputes this much before where the last one ended, so samples stamped a
# little before they were written (request records, a slow collection) still land in their minute.
ROLLUP_GRACE_S = 5 * MINUTE


def canonical_labels(labels: Optional[Mapping[str, str]]) -> str:
    """The one JSON spelling of a label set (sorted keys, no spaces), as stored and matched."""
    return json.dumps({str(k): str(v) for k, v in (labels or {}).items()}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Sample:
    """One reading: metric name (base units in the name), its labels, the value and when (time.time())."""

    metric: str
    labels: Mapping[str, str]
    value: float
    ts: float


def _floor(t: float, step: float) -> float:
    return math.floor(t / step) * step


class MetricsStore:
    """Samples in, series out; every failure to reach SQLite becomes a result and a status, not an exception.

    Safe to share between threads: each thread gets its own connection (sqlite3 connections are
    per thread), opened on first use. The schema is migrated on the first successful open.
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time, *,
                 raw_window_s: float = 86400.0, rollup_window_s: float = 30 * 86400.0,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.clock = clock
        self.raw_window_s = raw_window_s
        self.rollup_window_s = rollup_window_s
        self.busy_timeout_s = busy_timeout_s
        self._connections = PerThreadDatabase(self.path, migrations.apply, busy_timeout_s=busy_timeout_s)
        self._status = StoreStatus("metrics store", clock)

    # -- connections and status -------------------------------------------------------------------

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (opened, and the schema migrated, on first use); may raise STORE_ERRORS."""
        return self._connections.get()

    def close(self) -> None:
        """Close the calling thread's connection."""
        self._connections.close()

    @property
    def last_error(self) -> Optional[str]:
        """"locked" | "full" | "error" from the last failed operation (None if none failed yet)."""
        return self._status.last_error

    @property
    def last_error_at(self) -> Optional[float]:
        """When (clock time) the last operation failed."""
        return self._status.last_error_at

    def status(self) -> dict:
        """For /health: {"state": "ok" | "locked" | "full" | "error", "message": ..., last error and times}."""
        return self._status.as_dict()

    def _write(self, op: str, work: Callable[[sqlite_utils.Database], int]) -> WriteResult:
        try:
            db = self.db
            with immediate(db):
                rows = work(db)
        except STORE_ERRORS as exc:
            return self._status.failed(op, exc)
        self._status.succeeded()
        return WriteResult(True, rows)

    def _read(self, op: str, sql: str, params: Mapping | list) -> list:
        # WAL readers are not blocked by writers; this fails only when the file cannot be opened or
        # migrated. A chart then shows no data; /health keeps describing collection (writes).
        try:
            return self.db.execute(sql, params).fetchall()
        except STORE_ERRORS as exc:
            log.warning("metrics store: %s failed, returning no data (%s)", op, exc)
            return []

    # -- writes -----------------------------------------------------------------------------------

    def insert(self, samples: Iterable[Sample | tuple]) -> WriteResult:
        """Store samples (Sample or (metric, labels, value, ts) tuples); None/NaN values are gaps, not rows."""
        rows = []
        for sample in samples:
            sample = sample if isinstance(sample, Sample) else Sample(*sample)
            if sample.value is None or not math.isfinite(sample.value):
                continue
            rows.append((float(sample.ts), sample.metric, canonical_labels(sample.labels), float(sample.value)))
        if not rows:
            return WriteResult(True, 0)
        # One prepared statement for the whole batch: insert_all would rebuild dicts and SQL per chunk.
        return self._write("insert", lambda db: db.conn.executemany(
            "INSERT INTO samples (ts, metric, labels, value) VALUES (?, ?, ?, ?)", rows).rowcount)

    def rollup(self, now: Optional[float] = None) -> WriteResult:
        """Fold raw samples of completed minutes into roll-ups; recomputing a minute gives the same row."""
        now = self.clock() if now is None else now
        end = _floor(now, MINUTE)  # minutes before the current one are complete
        whole = math.ceil((now - self.raw_window_s) / MINUTE) * MINUTE  # first minute with all its raw rows

        def fold(db: sqlite_utils.Database) -> int:
            done = db.execute("SELECT max(minute) FROM rollups").fetchone()[0]
            if done is None:
                first = db.execute("SELECT min(ts) FROM samples").fetchone()[0]
                start = end if first is None else _floor(first, MINUTE)
            else:
                # Re-roll the grace minutes, but never one whose raw rows pruning may have begun to
                # remove (it would shrink); minutes never rolled are rolled from whatever is left.
                start = max(done + MINUTE - ROLLUP_GRACE_S, min(whole, done + MINUTE))
            if start >= end:
                return 0
            return db.execute(_ROLLUP_SQL, {"start": start, "end": end}).rowcount
        return self._write("rollup", fold)

    def prune(self, now: Optional[float] = None) -> WriteResult:
        """Delete raw samples older than raw_window_s and roll-ups older than rollup_window_s."""
        now = self.clock() if now is None else now

        def cut(db: sqlite_utils.Database) -> int:
            raw = db.execute("DELETE FROM samples WHERE ts < ?", [now - self.raw_window_s]).rowcount
            return raw + db.execute("DELETE FROM rollups WHERE minute < ?", [now - self.rollup_window_s]).rowcount
        return self._write("prune", cut)

    def maintain(self, now: Optional[float] = None) -> WriteResult:
        """The scheduled job: roll up, then prune (in that order, so no raw minute is lost unrolled)."""
        now = self.clock() if now is None else now
        rolled = self.rollup(now)
        if not rolled:
            return rolled
        pruned = self.prune(now)
        return WriteResult(pruned.ok, rolled.rows + pruned.rows, pruned.error, pruned.detail)

    # -- reads ------------------------------------------------------------------------------------

    def series(self, metric: str, since: float, step_s: float, *, labels: Optional[Mapping[str, str]] = None,
               until: Optional[float] = None) -> list[Point]:
        """Average of `metric` per `step_s` bucket (epoch-aligned) in [since, until], oldest first.

        `labels` picks one series by exact label set ({} is the unlabelled one); None averages every
        label set together (e.g. all GPUs). Buckets without samples are left out, not zero. Raw
        samples answer when `since` is inside the raw window; otherwise the roll-ups do (minute
        resolution, so a step under 60 s gives one point per minute), plus the raw samples after
        the last roll-up.
        """
        merged: dict[float, list[float]] = {}
        for (_, bucket), (total, count) in self._buckets(metric, since, step_s, labels, until).items():
            acc = merged.setdefault(bucket, [0.0, 0])
            acc[0] += total
            acc[1] += count
        return [(bucket, total / count) for bucket, (total, count) in sorted(merged.items())]

    def series_by_labels(self, metric: str, since: float, step_s: float, *,
                         until: Optional[float] = None) -> dict[str, list[Point]]:
        """Like `series`, one series per label set, keyed by canonical labels JSON (json.loads it back)."""
        grouped: dict[str, list[Point]] = {}
        for (labels, bucket), (total, count) in sorted(self._buckets(metric, since, step_s, None, until).items()):
            grouped.setdefault(labels, []).append((bucket, total / count))
        return grouped

    def _buckets(self, metric: str, since: float, step_s: float, labels: Optional[Mapping[str, str]],
                 until: Optional[float]) -> dict[tuple[str, float], tuple[float, int]]:
        if step_s <= 0:
            raise ValueError(f"step_s must be positive, got {step_s}")
        now = self.clock()
        until = now if until is None else until
        params = {"metric": metric, "step": float(step_s), "since": since, "until": until,
                  "labels": canonical_labels(labels)}
        where_labels = "" if labels is None else "AND labels = :labels"
        raw_from = since
        found: dict[tuple[str, float], list] = {}
        if since < now - self.raw_window_s:
            rows = self._read("series", "SELECT max(minute) FROM rollups", {})
            done = rows[0][0] if rows else None
            if done is not None:
                raw_from = max(since, done + MINUTE)
                params.update(first=_floor(since, MINUTE), cutoff=raw_from)
                for labels_json, bucket, total, count in self._read(
                        "series", _ROLLUP_SERIES_SQL.format(labels=where_labels), params):
                    found[(labels_json, float(bucket))] = [total, count]
        params["raw_from"] = raw_from
        for labels_json, bucket, total, count in self._read("series", _RAW_SERIES_SQL.format(labels=where_labels),
                                                            params):
            acc = found.setdefault((labels_json, float(bucket)), [0.0, 0])
            acc[0] += total
            acc[1] += count
        return {key: (total, count) for key, (total, count) in found.items()}

    def latest(self, metric: str, labels: Optional[Mapping[str, str]] = None) -> Optional[Point]:
        """The newest (ts, value) of `metric` (exact `labels`, or any label set if None); None if none kept."""
        where = "metric = ?" + ("" if labels is None else " AND labels = ?")
        params = [metric] + ([] if labels is None else [canonical_labels(labels)])
        rows = self._read("latest", f"SELECT ts, value FROM samples WHERE {where} ORDER BY ts DESC LIMIT 1", params)
        if not rows:  # raw rows pruned: the last roll-up still knows the minute's last value
            rows = self._read("latest", f"SELECT minute, last FROM rollups WHERE {where} ORDER BY minute DESC LIMIT 1",
                              params)
        return (rows[0][0], rows[0][1]) if rows else None

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its write-ahead log."""
        return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p))


# `last` is the same on every row of a minute's group, so max() merely picks it.
_ROLLUP_SQL = """
INSERT OR REPLACE INTO rollups (metric, labels, minute, count, sum, min, max, last)
SELECT metric, labels, minute, count(*), sum(value), min(value), max(value), max(last)
FROM (
    SELECT metric, labels, minute, value,
           first_value(value) OVER (PARTITION BY metric, labels, minute ORDER BY ts DESC, rid DESC) AS last
    FROM (SELECT rowid AS rid, metric, labels, ts, value, CAST(ts / 60 AS INTEGER) * 60.0 AS minute
          FROM samples WHERE ts >= :start AND ts < :end)
)
GROUP BY metric, labels, minute
"""

_RAW_SERIES_SQL = """
SELECT labels, CAST(ts / :step AS INTEGER) * :step AS bucket, sum(value), count(*)
FROM samples
WHERE metric = :metric AND ts >= :raw_from AND ts <= :until {labels}
GROUP BY labels, bucket
"""

_ROLLUP_SERIES_SQL = """
SELECT labels, CAST(minute / :step AS INTEGER) * :step AS bucket, sum(sum), sum(count)
FROM rollups
WHERE metric = :metric AND minute >= :first AND minute < :cutoff AND minute <= :until {labels}
GROUP BY labels, bucket
"""
