"""Expiry of abandoned pulls' partial downloads (blobs/partial-<key>.partial and its .json validator)."""
from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

PREFIX = "partial-"
PARTIAL = ".partial"
META = ".json"


def _old(path: Path, max_age: float, now: float) -> bool:
    """True when path's mtime is at least max_age seconds before now (max_age 0: any file)."""
    try:
        return now - path.stat().st_mtime >= max_age
    except FileNotFoundError:
        return False


def _expire_partial(partial: Path, max_age: float, now: float) -> list[Path]:
    """Delete one old partial and its validator unless a pull holds its lock; the paths deleted."""
    try:
        fd = os.open(partial, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a running pull is writing (or resuming) it
        # Under the lock, look again: the pull that held it may have renamed it into a blob (and a new
        # partial taken its name) or written to it just before letting go.
        try:
            if os.stat(partial).st_ino != os.fstat(fd).st_ino or not _old(partial, max_age, now):
                return []
        except FileNotFoundError:
            return []
        meta = partial.with_suffix(META)
        removed = []
        # The validator first: a partial without one is only resumed when the source ignores If-Range.
        for path in (meta, partial):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
        return removed
    finally:
        os.close(fd)  # releases the lock


def expire_partials(blobs_dir: str | Path, max_age: float, now: Callable[[], float] = time.time) -> list[Path]:
    """Delete the partial downloads in blobs_dir (with their .json) whose mtime is max_age seconds old or
    more, except those a running pull holds locked; also old .json files left without their partial.
    Returns the paths deleted. A missing directory is nothing to do."""
    blobs = Path(blobs_dir)
    moment = now()
    removed: list[Path] = []
    try:
        entries = sorted(blobs.glob(f"{PREFIX}*{PARTIAL}"))
    except OSError:
        return removed
    for partial in entries:
        if partial.is_file() and _old(partial, max_age, moment):
            removed.extend(_expire_partial(partial, max_age, moment))
    for meta in sorted(blobs.glob(f"{PREFIX}*{META}")):
        # A pull writes the .json only after it has created and locked the .partial, so a lone old one
        # belongs to no pull.
        if not meta.with_suffix(PARTIAL).exists() and _old(meta, max_age, moment):
            try:
                meta.unlink()
                removed.append(meta)
            except FileNotFoundError:
                pass
    for path in removed:
        log.info("deleted the abandoned partial download %s", path)
    return removed
