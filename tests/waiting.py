"""Waiting on a condition in tests: poll a predicate; the limit only guards against a hang, it is no timing."""
from __future__ import annotations

import threading
import time
from typing import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, limit_s: float = 60.0, every_s: float = 0.02) -> T:
    """predicate()'s first truthy value; AssertionError naming `what` if none comes within limit_s."""
    deadline = time.monotonic() + limit_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        pause.wait(every_s)
    raise AssertionError(f"timed out waiting for {what}")
