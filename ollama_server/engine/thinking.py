"""Splits streamed text into reasoning (inside <think>...</think>) and content, tags split across pieces included."""
from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """feed(text) -> (reasoning, content); holds back what may be the start of a tag."""

    def __init__(self, starts_inside: bool = False):
        self.inside = starts_inside
        self._pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        self._pending += text
        reasoning, content = [], []
        while self._pending:
            tag = CLOSE if self.inside else OPEN
            at = self._pending.find(tag)
            if at >= 0:
                (reasoning if self.inside else content).append(self._pending[:at])
                self._pending = self._pending[at + len(tag):]
                self.inside = not self.inside
                continue
            hold = _partial_suffix(self._pending, tag)
            cut = len(self._pending) - hold
            (reasoning if self.inside else content).append(self._pending[:cut])
            self._pending = self._pending[cut:]
            break
        return "".join(reasoning), "".join(content)

    def flush(self) -> tuple[str, str]:
        rest, self._pending = self._pending, ""
        return (rest, "") if self.inside else ("", rest)
