"""Where the engine thread's time goes, and which steps tell what a draft costs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ollama_server.engine.backend import DecodeEntry
from ollama_server.engine.slot import Slot


@dataclass
class StepProfile:
    """Where the engine thread's time goes, summed over steps: building the batch, llama_decode, and
    sampling / emitting (benchmarks/step_profile.py reads it)."""

    steps: int = 0
    prepare_s: float = 0.0
    decode_s: float = 0.0
    sample_s: float = 0.0

    def add(self, prepare_s: float, decode_s: float, sample_s: float) -> None:
        self.steps += 1
        self.prepare_s += prepare_s
        self.decode_s += decode_s
        self.sample_s += sample_s


def reading_any(slots: Sequence[Slot]) -> bool:
    """Whether some slot still has prompt tokens to read (its step would not be a lone decode)."""
    return any(slot.busy and slot.pending and slot.donor is None for slot in slots)


def lone_decode_rows(entries: Sequence[DecodeEntry]) -> int:
    """Logits rows of a step that only decodes one request (0 for any other step): what StepCosts learns from."""
    if len(entries) != 1:
        return 0
    entry = entries[0]
    if entry.all_logits:
        return len(entry.tokens)
    return 1 if entry.want_logits and len(entry.tokens) == 1 else 0
