"""llama.cpp's log lines into Python logging (logger "llama.cpp"), at their true levels, one record per line.

llama-cpp-python's own callback prints to stderr by a level table older than the vendored ggml's (whose enum
became NONE, DEBUG, INFO, WARN, ERROR, CONT): its INFO passes as WARNING and its errors as DEBUG, so unless its
logger is told otherwise every model load wrote hundreds of raw lines to the journal, and hiding them hid the
errors too. Routed here, they get the service's format and level like every other line.
"""
from __future__ import annotations

import logging
import threading

import llama_cpp

LOGGER_NAME = "llama.cpp"
# ggml_log_level of the vendored ggml; CONT continues the previous piece at its level.
GGML_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
GGML_CONT = 5
log = logging.getLogger(LOGGER_NAME)


class LineAssembler:
    """Joins llama.cpp's log pieces into lines, per thread (loads and decodes log from several)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def feed(self, level: int, text: str) -> list[tuple[int, str]]:
        """The (logging level, line) pairs this piece completes; a line takes the level of its first piece, and
        a CONT piece the level of the piece it continues."""
        state = self._local
        buffered: str = getattr(state, "buffered", "")
        if level != GGML_CONT and not buffered:
            state.level = GGML_LEVELS.get(level, logging.INFO)
        line_level: int = getattr(state, "level", logging.DEBUG)
        *complete, state.buffered = (buffered + text).split("\n")
        return [(line_level, line.rstrip()) for line in complete if line.strip()]


_assembler = LineAssembler()


@llama_cpp.llama_log_callback
def _on_llama_log(level: int, text: bytes, _user_data) -> None:
    try:  # called from C: an exception here would only be printed, never raised
        for line_level, line in _assembler.feed(level, text.decode("utf-8", errors="replace")):
            if log.isEnabledFor(line_level):
                log.log(line_level, "%s", line)
    except Exception:  # noqa: BLE001 - nothing must escape into llama.cpp
        pass


def route_llama_logs() -> None:
    """Send llama.cpp's (and ggml's) log lines to the "llama.cpp" logger from now on (idempotent)."""
    llama_cpp.llama_log_set(_on_llama_log, None)
