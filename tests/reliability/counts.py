"""Counts the reliability suites record during a run, for the summary printed at its end."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

# Suites may record from helper threads (soak clients): one lock keeps the merge consistent.
_LOCK = threading.Lock()
_COUNTS: dict[str, dict[str, float]] = {}
REPORT_ENV = "RELIABILITY_REPORT"


def record(suite: str, **numbers: float) -> None:
    """Record (overwrite) named numbers for a suite, and rewrite $RELIABILITY_REPORT if set."""
    if not suite:
        raise ValueError("suite must be a non-empty name")
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{suite}.{name} must be a number, got {type(value).__name__}")
    with _LOCK:
        _COUNTS.setdefault(suite, {}).update(numbers)
        snapshot = {name: dict(values) for name, values in _COUNTS.items()}
    _write_report(snapshot)


def recorded() -> dict[str, dict[str, float]]:
    """A copy of everything recorded so far, keyed by suite."""
    with _LOCK:
        return {name: dict(values) for name, values in _COUNTS.items()}


def summary_lines() -> list[str]:
    """One line per suite, suites sorted by name, numbers in the order first recorded."""
    lines = []
    for suite, values in sorted(recorded().items()):
        parts = " ".join(f"{name}={_format(value)}" for name, value in values.items())
        lines.append(f"{suite}: {parts}")
    return lines


def clear() -> None:
    """Forget every recorded count (for tests of this module)."""
    with _LOCK:
        _COUNTS.clear()


def _format(value: float) -> str:
    # Whole numbers print without a trailing ".0" so counts read as counts.
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_report(snapshot: dict[str, dict[str, float]]) -> None:
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a reader never sees half a JSON document.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
