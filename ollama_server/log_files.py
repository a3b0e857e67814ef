"""Log files of the companion layout: api_server.log, jobs.log and gpu_worker.log under logs/ (lines as
log_format makes them, JSON by default), and tail()."""
from __future__ import annotations

import logging
import logging.handlers
import os
import threading
from pathlib import Path

from ollama_server import log_format

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
TAIL_BLOCK = 64 * 1024

# component -> the logger hierarchies it takes; api_server takes every record the others do not.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "jobs": ("ollama_server.jobs",),
    "gpu_worker": ("ollama_server.engine", "ollama_server.monitoring.gpu", "llama.cpp"),
}
ALL_COMPONENTS = ("api_server", "gpu_worker", "jobs")
_MARK = "_ollama_server_log_file"  # attribute naming the component of a handler this module installed
_lock = threading.Lock()


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


class _ComponentFilter(logging.Filter):
    """Passes the records of one component's loggers (api_server: of every logger the others do not take)."""

    def __init__(self, component: str):
        super().__init__()
        self.component = component
        self.others = tuple(p for prefixes in COMPONENTS.values() for p in prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.component == "api_server":
            return not _under(record.name, self.others)
        return _under(record.name, COMPONENTS[self.component])


def install_log_files(logs_dir: Path, level: str) -> None:
    """Write the three component logs under `logs_dir` (rotating, 10 MiB x 3, in the configured log_format,
    secrets redacted); calling again replaces them. apply_log_level changes their level later."""
    numeric = log_format.level_number(level)
    logs_dir = Path(logs_dir)
    logs_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    with _lock:
        # All three sit on the root logger with filters: a record is written once, whichever logger it
        # came from, and child loggers need no handlers of their own.
        for handler in [h for h in root.handlers if getattr(h, _MARK, None)]:
            root.removeHandler(handler)
            handler.close()
        for component in ALL_COMPONENTS:
            handler = logging.handlers.RotatingFileHandler(logs_dir / f"{component}.log", maxBytes=MAX_BYTES,
                                                           backupCount=BACKUPS, encoding="utf-8", delay=True)
            log_format.own(handler, numeric)
            handler.addFilter(_ComponentFilter(component))
            setattr(handler, _MARK, component)
            root.addHandler(handler)
        if root.level > numeric:  # the root's own level gates records before any handler sees them
            root.setLevel(numeric)


def installed_log_files() -> dict[str, Path]:
    """component -> the file its installed handler writes (empty before install_log_files)."""
    return {getattr(h, _MARK): Path(h.baseFilename) for h in logging.getLogger().handlers if getattr(h, _MARK, None)}


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file (without line ends), reading blocks back from its end; [] when
    the file does not exist."""
    if lines <= 0:
        return []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return []
    with handle:
        end = handle.seek(0, os.SEEK_END)
        position, data = end, b""
        # One more newline than lines wanted: the text before it is the first wanted line's start.
        while position > 0 and data.count(b"\n") <= lines:
            step = min(TAIL_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    text = data.decode("utf-8", errors="replace")
    found = text.split("\n")
    if found and found[-1] == "":
        found.pop()  # the file's final newline ends the last line; it starts no new one
    if position > 0:
        found = found[1:]  # the first piece may be the tail of a longer line, cut by the block boundary
    return [line.removesuffix("\r") for line in found[-lines:]]
