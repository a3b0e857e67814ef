"""Pure helpers that turn token bytes into safe text deltas: UTF-8 reassembly, stop strings, <think> split."""
from __future__ import annotations

import codecs
from typing import Sequence

from ollama_server.engine.thinking import ThinkSplitter


class Utf8Assembler:
    """Joins token byte pieces; a character split across tokens is emitted once it is whole."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds the first stop string in streamed text, holding back what might start one."""

    def __init__(self, stops: Sequence[str]):
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Text that is safe to emit now; sets `matched` when a stop string appears."""
        if not self._stops:
            return text
        self._pending += text
        hits = [(self._pending.find(s), s) for s in self._stops]
        hits = [(at, s) for at, s in hits if at >= 0]
        if hits:
            at, stop = min(hits)
            self.matched = stop
            safe, self._pending = self._pending[:at], ""
            return safe
        hold = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - hold
        safe, self._pending = self._pending[:cut], self._pending[cut:]
        return safe

    def flush(self) -> str:
        """Whatever was held back, at the end of the stream."""
        rest, self._pending = self._pending, ""
        return rest

    def _longest_stop_prefix_suffix(self) -> int:
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:size]):
                    best = size
                    break
        return best


class TextPipeline:
    """Token bytes -> UTF-8 text -> stop strings -> reasoning/content split, in that order."""

    def __init__(self, request) -> None:
        self._utf8 = Utf8Assembler()
        self._stops = StopMatcher(request.stop)
        self._think = ThinkSplitter() if request.split_thinking else None
        self._include_stop = request.include_stop_str
        self.matched: str | None = None

    def feed(self, piece: bytes) -> tuple[str, str]:
        text = self._stops.feed(self._utf8.feed(piece))
        if self._stops.matched is not None:
            self.matched = self._stops.matched
            if self._include_stop:
                text += self.matched
        return self._split(text)

    def finish(self) -> tuple[str, str]:
        """What is still held back, once the generation is over."""
        if self.matched is not None:
            text = ""
        else:
            text = self._stops.feed(self._utf8.flush()) + self._stops.flush()
        reasoning, content = self._split(text)
        if self._think is not None:
            more_reasoning, more_content = self._think.flush()
            reasoning, content = reasoning + more_reasoning, content + more_content
        return reasoning, content

    def _split(self, text: str) -> tuple[str, str]:
        if self._think is None:
            return "", text
        return self._think.feed(text)
