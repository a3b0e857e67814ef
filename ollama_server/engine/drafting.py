"""Draft tokens for speculative decoding: prompt lookup (n-grams of the request's own tokens) and the
per-request controller that sizes drafts and switches them off when they are not accepted.

A draft costs a batch row with logits per token; it pays only when most drafted tokens are accepted and
the batch is small (see docs/benchmarks.md for the measured costs), hence the controller.
"""
from __future__ import annotations

from typing import Optional
from typing import Sequence

NGRAM_SIZES = (4, 3, 2)   # longest match first: a longer shared context predicts the continuation better
MAX_DRAFT = 8             # tokens drafted per step at most
FIRST_DRAFT = 4           # draft length before anything is known about the request
MIN_ACCEPTANCE = 0.5      # below this share of accepted tokens (after PROBATION), drafting stops
PROBATION = 16            # drafted tokens judged before the switch-off rule applies


class NgramIndex:
    """Where each n-gram of a token sequence last occurred, for proposing what followed it then."""

    def __init__(self, tokens: Sequence[int] = ()):
        self.tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token that followed it last
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        """The sequence grew by one token: the n-grams ending just before it now have a follower."""
        tokens = self.tokens
        end = len(tokens)
        for n in NGRAM_SIZES:
            if end >= n:
                self._next[tuple(tokens[end - n:end])] = end
        tokens.append(token)

    def propose(self, max_tokens: int) -> list[int]:
        """What followed the latest earlier occurrence of the sequence's last n tokens (longest n first)."""
        tokens = self.tokens
        if max_tokens <= 0:
            return []
        for n in NGRAM_SIZES:
            if len(tokens) <= n:
                continue
            start = self._next.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start:start + max_tokens]
        return []


class DraftController:
    """One request's drafting state: its n-gram index (or a draft model's view), draft length, acceptance."""

    def __init__(self, prompt: Sequence[int], enabled: bool):
        self.index = NgramIndex(prompt)
        self.enabled = enabled
        self.length = FIRST_DRAFT
        self.proposed = 0
        self.accepted = 0

    def append(self, token: int) -> None:
        self.index.append(token)

    @property
    def history(self) -> list[int]:
        return self.index.tokens

    def limit(self, room: int) -> int:
        """Tokens to draft this step, given `room` (tokens the request may still take, context and max_tokens)."""
        if not self.enabled:
            return 0
        return max(0, min(self.length, room, MAX_DRAFT))

    def propose(self, room: int, drafter=None, seq: Optional[int] = None) -> list[int]:
        """This step's draft: from the draft model when there is one, else by prompt lookup."""
        size = self.limit(room)
        if size <= 0:
            return []
        if drafter is not None:
            return list(drafter.propose(seq, self.history, size))[:size]
        return self.index.propose(size)

    def judge(self, drafted: int, accepted: int) -> None:
        """Learn from one verified draft: grow after a full acceptance, shrink after a miss, stop when poor."""
        if drafted <= 0:
            return
        self.proposed += drafted
        self.accepted += accepted
        if accepted == drafted:
            self.length = min(MAX_DRAFT, self.length * 2)
        else:
            self.length = max(1, accepted + 1)
        if self.proposed >= PROBATION and self.accepted < MIN_ACCEPTANCE * self.proposed:
            self.enabled = False
