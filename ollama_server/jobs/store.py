"""JobStore: the job queue in SQLite (the seed's `jobs` table plus progress and cancellation)."""
from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Optional

import sqlite_utils

from ollama_server.storage.db import PerThreadDatabase
from ollama_server.storage.db import immediate

JOB_TYPES = ("eval", "data_gen", "convert")
STATUSES = ("pending", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
ID_PREFIX = {"eval": "eval", "data_gen": "datagen", "convert": "convert"}
BUSY_TIMEOUT_S = 10.0  # a job's bookkeeping may wait for the dashboard's reads; it must never be dropped


def _now() -> datetime:
    return datetime.now()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")  # the seed's ISO local time without a zone


def _migrate(db: sqlite_utils.Database) -> None:
    if "jobs" not in db.table_names():
        db["jobs"].create({"id": str, "type": str, "model_id": str, "name": str, "config": str, "status": str,
                           "created_at": str, "started_at": str, "completed_at": str, "result": str,
                           "error": str, "progress_done": int, "progress_total": int, "cancel_requested": int,
                           "attempts": int}, pk="id", not_null={"type", "status"},
                          defaults={"status": "pending", "progress_done": 0, "cancel_requested": 0,
                                    "attempts": 0})
        db["jobs"].create_index(["status", "created_at"])
        db["jobs"].create_index(["type", "created_at"])
    if "model_notes" not in db.table_names():  # the seed's models table: who registered what, when, tagged how
        db["model_notes"].create({"id": str, "source": str, "tags": str, "created_at": str, "path": str}, pk="id")


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it (JSON columns parsed, progress grouped)."""
    return {"job_id": row["id"], "id": row["id"], "type": row["type"], "model_id": row["model_id"],
            "name": row["name"], "config": json.loads(row["config"]) if row["config"] else {},
            "status": row["status"], "created_at": row["created_at"], "started_at": row["started_at"],
            "completed_at": row["completed_at"],
            "result": json.loads(row["result"]) if row["result"] else None, "error": row["error"],
            "progress": {"done": row["progress_done"] or 0, "total": row["progress_total"]},
            "cancel_requested": bool(row["cancel_requested"]), "attempts": row["attempts"] or 0}


class JobStore:
    """Jobs of every type with status pending → running → done | failed | cancelled; one connection per thread."""

    def __init__(self, path: str | Path, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self._db = PerThreadDatabase(self.path, _migrate, busy_timeout_s=busy_timeout_s)

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cursor = self._db.get().execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    # --- creating and reading -----------------------------------------------------------------
    def create(self, type: str, model_id: Optional[str], config: dict, name: Optional[str] = None) -> dict:
        """A new pending job, id `<prefix>_YYYYMMDD_HHMMSS` (with `_2`, `_3`, ... when that second is taken)."""
        if type not in JOB_TYPES:
            raise ValueError(f"unknown job type {type!r}")
        now = _now()
        base = f"{ID_PREFIX[type]}_{now.strftime('%Y%m%d_%H%M%S')}"
        db = self._db.get()
        with immediate(db):
            taken = {row[0] for row in db.execute("SELECT id FROM jobs WHERE id = ? OR id LIKE ? ESCAPE '!'",
                                                  (base, base + "!_%")).fetchall()}
            job_id, n = base, 1
            while job_id in taken:
                n += 1
                job_id = f"{base}_{n}"
            db["jobs"].insert({"id": job_id, "type": type, "model_id": model_id, "name": name,
                               "config": json.dumps(config), "status": "pending", "created_at": _iso(now),
                               "progress_done": 0, "cancel_requested": 0, "attempts": 0})
            created = self.get(job_id)  # read in the same transaction: as queued, before a worker claims it
        return created

    def get(self, job_id: str) -> Optional[dict]:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def list(self, type: Optional[str] = None, status: Optional[str] = None, limit: int = 100) -> list[dict]:
        """Newest first, optionally of one type and/or status."""
        where, params = [], []
        if type:
            where.append("type = ?")
            params.append(type)
        if status:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [_record(row) for row in self._rows(sql, (*params, int(limit)))]

    def stats(self) -> dict[str, int]:
        """Counts by status, and jobs done within the last hour (the seed's jobs_last_hour)."""
        counts = dict.fromkeys(STATUSES, 0)
        for status, count in self._db.get().execute("SELECT status, count(*) FROM jobs GROUP BY status"):
            counts[status] = count
        hour_ago = _iso(_now() - timedelta(hours=1))
        counts["jobs_last_hour"] = self._db.get().execute(
            "SELECT count(*) FROM jobs WHERE status = 'done' AND completed_at >= ?", (hour_ago,)).fetchone()[0]
        return counts

    # --- the worker's side --------------------------------------------------------------------
    def claim_next(self, types: tuple[str, ...] = JOB_TYPES) -> Optional[dict]:
        """Atomically move the oldest pending job to running (None when there is none)."""
        db = self._db.get()
        marks = ",".join("?" * len(types))
        with immediate(db):
            row = db.execute(f"SELECT id FROM jobs WHERE status = 'pending' AND type IN ({marks}) "
                             "ORDER BY created_at, rowid LIMIT 1", types).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', started_at = coalesce(started_at, ?), "
                       "attempts = attempts + 1 WHERE id = ?", (_iso(_now()), row[0]))
        return self.get(row[0])

    def mark_running(self, job_id: str) -> Optional[dict]:
        """Move one pending job to running (tests and the dashboard use it to stage a job)."""
        with immediate(self._db.get()) as db:
            db.execute("UPDATE jobs SET status = 'running', started_at = coalesce(started_at, ?), "
                       "attempts = attempts + 1 WHERE id = ? AND status = 'pending'", (_iso(_now()), job_id))
        return self.get(job_id)

    def progress(self, job_id: str, done: int, total: Optional[int]) -> None:
        with immediate(self._db.get()) as db:
            db.execute("UPDATE jobs SET progress_done = ?, progress_total = ? WHERE id = ?", (done, total, job_id))

    def update_result(self, job_id: str, result: dict) -> None:
        """The result so far of a running job (data-gen lists its shards as each completes)."""
        with immediate(self._db.get()) as db:
            db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def finish(self, job_id: str, status: str, result: Optional[dict] = None, error: Optional[str] = None) -> None:
        """End a job: done, failed or cancelled, with its result or error."""
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status!r}")
        with immediate(self._db.get()) as db:
            db.execute("UPDATE jobs SET status = ?, completed_at = ?, result = coalesce(?, result), error = ? "
                       "WHERE id = ?", (status, _iso(_now()), json.dumps(result) if result is not None else None,
                                        error, job_id))

    def request_cancel(self, job_id: str) -> Optional[dict]:
        """Cancel a pending job at once, ask a running one to stop; a finished job is left as it is."""
        with immediate(self._db.get()) as db:
            db.execute("UPDATE jobs SET status = 'cancelled', completed_at = ?, cancel_requested = 1 "
                       "WHERE id = ? AND status = 'pending'", (_iso(_now()), job_id))
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        row = self._db.get().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def requeue_interrupted(self) -> list[str]:
        """At start: jobs left running by a crash or restart go back to pending, keeping their progress, so the
        worker resumes them from their last completed example or shard (a cancel asked for ends them instead)."""
        with immediate(self._db.get()) as db:
            ids = [row[0] for row in db.execute("SELECT id FROM jobs WHERE status = 'running'").fetchall()]
            db.execute("UPDATE jobs SET status = 'cancelled', completed_at = ? "
                       "WHERE status = 'running' AND cancel_requested = 1", (_iso(_now()),))
            db.execute("UPDATE jobs SET status = 'pending' WHERE status = 'running'")
        return ids

    # --- registrations (the seed's source, tags and created_at of a registered model) ----------
    def note_model(self, model_id: str, source: Optional[str], tags: Optional[str], path: str) -> None:
        with immediate(self._db.get()) as db:
            db["model_notes"].upsert({"id": model_id, "source": source, "tags": tags, "path": path,
                                      "created_at": _iso(_now())}, pk="id")

    def model_notes(self) -> dict[str, dict]:
        return {row["id"]: row for row in self._rows("SELECT * FROM model_notes")}

    def status_ok(self) -> bool:
        """Whether the file can be read (for /health and the dashboard, never raises)."""
        try:
            self._db.get().execute("SELECT 1 FROM jobs LIMIT 1")
            return True
        except (sqlite3.Error, OSError):
            return False
