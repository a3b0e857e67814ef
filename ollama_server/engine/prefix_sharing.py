"""Shared prompt prefixes across slots: a request whose prompt starts like another slot's (a system prompt,
few-shot examples, a document) copies that slot's KV cells instead of evaluating the prefix again.

When the other slot is still reading the prefix, the newcomer waits for it (its own prompt chunks are held)
and the reader's chunks stop exactly at the shared length, so that the cells copied are those of the prefix.
"""
from __future__ import annotations

from typing import Optional
from typing import Sequence

from ollama_server.engine.slot import Slot

MIN_SHARED = 64  # tokens a shared prefix must add over the slot's own cache to be worth a copy (a stream's buffers)


def known_prefix(slot: Slot, prompt: Sequence[int]) -> int:
    """How many leading prompt tokens `slot` holds or will hold once its pending prompt is read."""
    count = slot.common_prefix(prompt)
    if count < len(slot.cached) or not slot.busy:
        return count
    for wanted, pending in zip(prompt[count:], slot.pending):
        if wanted != pending:
            break
        count += 1
    return count


def find_donor(slots: Sequence[Slot], target: Slot, prompt: Sequence[int], own: int) -> tuple[Optional[Slot], int]:
    """The slot sharing the longest prompt prefix with `prompt` (at least MIN_SHARED beyond `own`), and that
    length (never the whole prompt: its last token must be evaluated for the first logits)."""
    best, best_length = None, own + MIN_SHARED - 1
    for slot in slots:
        if slot is target or slot.donor is not None:
            continue  # a slot itself waiting for a donor holds nothing yet worth copying
        length = min(known_prefix(slot, prompt), len(prompt) - 1)
        if length > best_length:
            best, best_length = slot, length
    return (best, best_length) if best is not None else (None, 0)


def chunk_limit(donor: Slot, slots: Sequence[Slot]) -> Optional[int]:
    """Prompt tokens `donor` may read this step before reaching a length a waiting slot will copy."""
    cached = len(donor.cached)
    stops = [length - cached for slot in slots if slot.donor is donor
             for length in (slot.shared_length,) if length > cached]
    return min(stops) if stops else None
