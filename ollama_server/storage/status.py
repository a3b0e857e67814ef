"""What /health says about a store: the last write failure ("locked", "full") until a write succeeds."""
from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)

# Failures that mean "not now" (locked, disk full, cannot open the file): reported, never raised.
STORE_ERRORS = (sqlite3.OperationalError, OSError)


@dataclass(frozen=True)
class WriteResult:
    """What a write did: ok and how many rows, or why it was skipped ("locked", "full", "error")."""

    ok: bool
    rows: int = 0
    error: Optional[str] = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok


def error_kind(exc: BaseException) -> str:
    """"locked" (SQLITE_BUSY/LOCKED), "full" (SQLITE_FULL, ENOSPC) or "error" for anything else."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "locked"
    if name.startswith("SQLITE_FULL") or "is full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        return "full"
    return "error"


class StoreStatus:
    """Failure and success of a store's operations, thread-safe, logged once per outage."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time):
        self.name = name
        self.clock = clock
        self._lock = threading.Lock()
        self._failing = False  # the last failure has not been followed by a successful write
        self.last_error: Optional[str] = None
        self.last_error_detail = ""
        self.last_error_at: Optional[float] = None
        self.last_ok_at: Optional[float] = None

    def failed(self, op: str, exc: BaseException) -> WriteResult:
        """Record that `op` was skipped because of `exc`; returns the failed WriteResult."""
        kind = error_kind(exc)
        with self._lock:
            repeated = self._failing and self.last_error == kind
            self.last_error, self.last_error_detail, self.last_error_at = kind, f"{op}: {exc}", self.clock()
            self._failing = True
        # WARNING once per outage: a locked database would otherwise log on every collection.
        (log.debug if repeated else log.warning)("%s: %s, %s skipped (%s)", self.name, kind, op, exc)
        return WriteResult(False, 0, kind, str(exc))

    def succeeded(self) -> None:
        """Record a successful write: the store is healthy again."""
        with self._lock:
            if self._failing:
                log.info("%s: writable again after %s", self.name, self.last_error)
            self._failing = False
            self.last_ok_at = self.clock()

    def as_dict(self) -> dict:
        """State "ok" | "locked" | "full" | "error", a message for /health, and the last error and times."""
        with self._lock:
            state = self.last_error if self._failing else "ok"
            message = f"{self.name}: {state}, collection skipped" if self._failing else f"{self.name}: ok"
            return {"state": state, "message": message, "last_error": self.last_error,
                    "last_error_detail": self.last_error_detail, "last_error_at": self.last_error_at,
                    "last_ok_at": self.last_ok_at}
