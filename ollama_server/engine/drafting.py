"""Draft tokens for speculative decoding: prompt lookup (n-grams of the request's own tokens) and the
per-request controller that sizes drafts and switches them off when they are not accepted.

A draft costs a batch row with logits per token; it pays only when most drafted tokens are accepted and
the batch is small (see docs/benchmarks.md for the measured costs), hence the controller.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Optional
from typing import Sequence

NGRAM_SIZES = (4, 3, 2)   # longest match first: a longer shared context predicts the continuation better
MAX_DRAFT = 8             # tokens drafted per step at most
FIRST_DRAFT = 4           # draft length before anything is known about the request
MIN_ACCEPTANCE = 0.5      # below this share of accepted tokens (after PROBATION), drafting stops
PROBATION = 16            # drafted tokens judged before the switch-off rule applies
PRIOR_ACCEPTED, PRIOR_TRIALS = 4.0, 5.0  # an optimistic start (0.8), so that a new request tries drafting
DEFAULT_ROW_COST = 0.5    # cost of one more logits row relative to a one-token step, until measured


def expected_speedup(acceptance: float, length: int, relative_cost: float) -> float:
    """Tokens per unit of time with `length` drafted tokens over tokens without: each draft token is kept
    with probability `acceptance` while all before it were; the step costs `relative_cost` one-token steps."""
    kept = sum(acceptance ** i for i in range(1, length + 1))
    return (1.0 + kept) / relative_cost


def best_length(acceptance: float, costs: "StepCosts", most: int) -> int:
    """The draft length (0: none) that maximises the expected speed-up."""
    best, best_gain = 0, 1.0
    for length in range(1, most + 1):
        gain = expected_speedup(acceptance, length, costs.relative(length + 1))
        if gain > best_gain:
            best, best_gain = length, gain
    return best


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
        self.trials = 0  # draft tokens judged one by one (up to and including the first rejected one)

    def append(self, token: int) -> None:
        self.index.append(token)

    @property
    def history(self) -> list[int]:
        return self.index.tokens

    @property
    def acceptance(self) -> float:
        """Estimated chance that a draft token is kept, given the ones before it were."""
        return (self.accepted + PRIOR_ACCEPTED) / (self.trials + PRIOR_TRIALS)

    def limit(self, room: int, costs: Optional["StepCosts"] = None) -> int:
        """Tokens to draft this step, given `room` (tokens the request may still take, context and max_tokens)
        and what steps cost: the length that pays best for this request's acceptance, at most the current
        adaptive length."""
        if not self.enabled:
            return 0
        most = max(0, min(self.length, room, MAX_DRAFT))
        return best_length(self.acceptance, costs or StepCosts(), most)

    def propose(self, room: int, drafter=None, seq: Optional[int] = None,
                costs: Optional["StepCosts"] = None) -> list[int]:
        """This step's draft: from the draft model when there is one, else by prompt lookup."""
        size = self.limit(room, costs)
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
        self.trials += accepted + (1 if accepted < drafted else 0)
        if accepted == drafted:
            self.length = min(MAX_DRAFT, self.length * 2)
        else:
            self.length = max(1, accepted + 1)
        if self.proposed >= PROBATION and self.accepted < MIN_ACCEPTANCE * self.proposed:
            self.enabled = False


class StepCosts:
    """What a lone request's step costs with 1, 2, ... logits rows, measured on this model (an average per
    row count: llama.cpp's CPU kernels are not linear in rows, odd counts cost more than the next even one)."""

    WEIGHT = 0.1  # of a new measurement: recent steps weigh more, the machine's load changes
    BASELINE_EVERY = 32  # lone steps between two undrafted ones, which keep the one-row cost current

    def __init__(self):
        self._seconds: dict[int, float] = {}
        self._since_baseline = self.BASELINE_EVERY

    def wants_baseline(self) -> bool:
        """Whether the next lone step should go undrafted, to measure what a one-row step costs now."""
        return self._since_baseline >= self.BASELINE_EVERY

    def add(self, rows: int, seconds: float) -> None:
        """One decode of a lone request's `rows` logits rows (1: no draft) that took `seconds`."""
        self._since_baseline = 0 if rows == 1 else self._since_baseline + 1
        old = self._seconds.get(rows)
        self._seconds[rows] = seconds if old is None else old + self.WEIGHT * (seconds - old)

    def relative(self, rows: int) -> float:
        """A `rows`-row step's cost over a one-row step's (DEFAULT_ROW_COST per row until both are measured)."""
        one, this = self._seconds.get(1), self._seconds.get(rows)
        if rows <= 1:
            return 1.0
        if one is None or this is None or one <= 0:
            return 1.0 + DEFAULT_ROW_COST * (rows - 1)
        return this / one


@dataclass(frozen=True)
class Speculation:
    """Speculative decoding for a model: on or off; up to how many decoding slots it is tried (beyond, the
    batch is compute-bound and drafts cost what they save); the draft model (None: prompt lookup); step
    costs to judge drafts by (None: measured)."""

    enabled: bool = True
    max_slots: int = 2
    drafter: Any = None
    costs: Any = None
