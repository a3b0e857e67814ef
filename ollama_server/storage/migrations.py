"""The schema, as named migrations: one function per change, applied in order, each exactly once."""
from __future__ import annotations

import sqlite_utils

# Names are recorded in `_sqlite_migrations` and identify what a database has already had:
# never rename or edit an applied migration, add a new one instead.
migrations = sqlite_utils.Migrations("ollama_server")


@migrations()
def samples(db: sqlite_utils.Database) -> None:
    """Raw samples: one row per reading; labels are canonical JSON (sorted keys)."""
    db["samples"].create(
        {"ts": float, "metric": str, "labels": str, "value": float},
        not_null={"ts", "metric", "labels", "value"},
    )
    # (metric, ts) serves the chart queries; carrying labels and value makes it covering, so a
    # chart never visits the table. ts alone serves the roll-up scan and pruning, which cut
    # across every metric by time.
    db["samples"].create_index(["metric", "ts", "labels", "value"])
    db["samples"].create_index(["ts"])


@migrations()
def rollups(db: sqlite_utils.Database) -> None:
    """One-minute roll-ups of the raw samples, kept longer than the raw rows."""
    # WITHOUT ROWID: rows live in primary-key order, so one series' month is a contiguous range and
    # the key is not stored twice (sqlite-utils' create() cannot say WITHOUT ROWID, hence the SQL).
    db.execute("""
        CREATE TABLE rollups (
            minute REAL NOT NULL, metric TEXT NOT NULL, labels TEXT NOT NULL, count INTEGER NOT NULL,
            sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, last REAL NOT NULL,
            PRIMARY KEY (metric, labels, minute)
        ) WITHOUT ROWID
    """)
    # Pruning, and finding where the roll-ups end, go by minute across all series.
    db["rollups"].create_index(["minute"])


@migrations()
def alert_events(db: sqlite_utils.Database) -> None:
    """Alert transitions (fired, escalated, resolved...), one row each, for /api/alerts' history."""
    db["alert_events"].create(
        {"id": int, "at": float, "alert": str, "labels": str, "old": str, "new": str, "severity": str,
         "previous_severity": str, "reason": str, "value": float, "threshold": float, "started_at": float,
         "summary": str},
        pk="id", not_null={"at", "alert", "labels", "old", "new", "severity", "reason", "started_at"},
    )
    # Newest first for the history; (alert, labels, id) finds each alert's last transition.
    db["alert_events"].create_index(["at"])
    db["alert_events"].create_index(["alert", "labels", "id"])


@migrations()
def config_versions(db: sqlite_utils.Database) -> None:
    """Every applied runtime configuration: who, when, what changed, and the full tunable values after it."""
    db["config_versions"].create(
        {"id": int, "at": float, "actor": str, "source": str, "changes": str, "values": str, "note": str,
         "rollback_of": int},
        pk="id", not_null={"at", "actor", "source", "changes", "values"},
    )


@migrations()
def alert_silences(db: sqlite_utils.Database) -> None:
    """Silences and acknowledgements of alerts: an alert (rule + labels) is quiet until `until`."""
    db["alert_silences"].create(
        {"id": int, "at": float, "alert": str, "labels": str, "kind": str, "until": float, "actor": str,
         "comment": str},
        pk="id", not_null={"at", "alert", "labels", "kind", "actor"},
    )
    db["alert_silences"].create_index(["alert", "labels", "id"])


@migrations()
def model_benchmarks(db: sqlite_utils.Database) -> None:
    """Results of the dashboard's fixed per-model benchmark (prompt and decode tokens/s, TTFT)."""
    db["model_benchmarks"].create(
        {"id": int, "at": float, "model": str, "status": str, "prompt_tokens": int, "completion_tokens": int,
         "prompt_tokens_per_second": float, "decode_tokens_per_second": float, "ttft_s": float,
         "duration_s": float, "settings": str, "error": str},
        pk="id", not_null={"at", "model", "status"},
    )
    db["model_benchmarks"].create_index(["model", "at"])


def apply(db: sqlite_utils.Database) -> None:
    """Apply the pending migrations (none pending: nothing happens)."""
    migrations.apply(db)
