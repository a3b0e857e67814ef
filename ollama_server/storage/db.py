"""Open the service's SQLite file: WAL, a short busy timeout, foreign keys on."""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Callable
from typing import Iterator

import sqlite_utils

# Short on purpose: a writer that cannot get the lock in 2 s skips its turn instead of holding a
# collector or request thread hostage (the next collection simply tries again).
BUSY_TIMEOUT_S = 2.0


def open_db(path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite_utils.Database:
    """Open (creating the file and its directory) the database at `path` for the calling thread only.

    sqlite3 connections belong to the thread that opened them (`check_same_thread` stays on, so
    misuse fails loudly): open one per request, per scheduler job or per thread, never share one.
    Raises sqlite3.OperationalError / OSError when the file cannot be opened or set up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s)
    db = sqlite_utils.Database(conn)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        # WAL: the dashboard's readers never wait for the collector's writes, nor the writer for them.
        db.enable_wal()
        # In WAL mode NORMAL loses at most the last commits on power loss, never consistency: fine
        # for metrics, and it saves an fsync on every collection.
        db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return db


@contextlib.contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock at BEGIN; committed, or rolled back on any error."""
    # Taking the lock up front means busy_timeout bounds the one wait, and the transaction can never
    # fail half-way on a lock upgrade as a deferred one can.
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.conn.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise


class PerThreadDatabase:
    """One connection per thread to one file, opened on first use; `migrate` runs once per process."""

    def __init__(self, path: str | Path, migrate: Callable[[sqlite_utils.Database], None], *,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._migrate = migrate
        self._local = threading.local()
        self._lock = threading.Lock()  # two threads' first opens must not both run the migrations
        self._migrated = False

    def get(self) -> sqlite_utils.Database:
        """This thread's connection (opened, and the schema migrated, on first use); may raise
        sqlite3.OperationalError / OSError (a locked or unwritable file)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_db(self.path, busy_timeout_s=self.busy_timeout_s)
            try:
                with self._lock:
                    if not self._migrated:
                        self._migrate(db)
                        self._migrated = True
            except BaseException:
                db.close()
                raise
            self._local.db = db
        return db

    def close(self) -> None:
        """Close the calling thread's connection (other threads' close with their thread)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()
