"""A logging handler that keeps what reaches it, for tests that read the service's log lines."""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Iterator
from typing import Optional


class Captured(logging.Handler):
    """Every record that reaches it (any level): the record, its message, and its line as `formatter` writes it,
    formatted in the thread that logs it (the JSON formatter reads that thread's request context)."""

    def __init__(self, formatter: Optional[logging.Formatter] = None):
        super().__init__(logging.NOTSET)
        if formatter is not None:
            self.setFormatter(formatter)
        self.records: list[logging.LogRecord] = []
        self.messages: list[str] = []
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._guard:
            self.records.append(record)
            self.messages.append(record.getMessage())
            self.lines.append(line)

    def parsed(self) -> list[dict]:
        """The lines as JSON objects (with the JSON formatter)."""
        with self._guard:
            return [json.loads(text) for text in self.lines]

    def with_message(self, part: str) -> list[dict]:
        """The parsed lines whose message contains `part`."""
        return [line for line in self.parsed() if part in line["message"]]


@contextlib.contextmanager
def on_root(*handlers: logging.Handler, level: int) -> Iterator[None]:
    """`handlers` on the root logger at `level`; afterwards they, and any log files installed meanwhile, are
    removed and the root's level is as it was."""
    from ollama_server import log_files
    root = logging.getLogger()
    before = root.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        for handler in list(handlers) + [h for h in root.handlers if getattr(h, log_files._MARK, None)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before)
