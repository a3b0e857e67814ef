"""TruncatedSampler: llama.cpp's sampler chain on a few candidates instead of the whole vocabulary.

The chain is the one LlamaBatchModel builds for llama.cpp (penalties, top-k, top-p, min-p, temperature,
dist), applied in that order with the same rules; but where llama.cpp copies every logit into a candidate
array per token (262,144 entries for Gemma), this reads the logits view once with a vectorised threshold
and works on the tokens above it. The threshold is lowered until the set provably holds every token the
chain could keep, so the result is the same distribution, not an approximation.
"""
from __future__ import annotations

import collections
import math
from typing import Optional
from typing import Sequence

import numpy as np

from ollama_server.engine.types import SamplingParams

PENALTY_WINDOW = 64     # tokens the repetition penalties look back over (llama.cpp's default)
_FIRST_MARGIN = 6.0     # logits below the maximum looked at first; doubled until the set is complete


class PenaltyWindow:
    """The last PENALTY_WINDOW tokens and how often each occurs, as llama.cpp's penalty sampler keeps them."""

    def __init__(self, tokens: Sequence[int] = ()):
        self._window: collections.deque[int] = collections.deque()
        self.counts: collections.Counter[int] = collections.Counter()
        for token in tokens[-PENALTY_WINDOW:]:
            self.accept(token)

    def accept(self, token: int) -> None:
        if len(self._window) == PENALTY_WINDOW:
            old = self._window.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        self._window.append(token)
        self.counts[token] += 1


class TruncatedSampler:
    """One request's sampling state: parameters, penalty window and random stream (seeded)."""

    def __init__(self, sampling: SamplingParams, prompt: Sequence[int], end_tokens: np.ndarray, seed: int,
                 ban_always: bool = False):
        self.temperature = sampling.temperature
        self.top_k = sampling.top_k
        self.top_p = sampling.top_p
        self.min_p = sampling.min_p
        self.repeat_penalty = sampling.repeat_penalty
        self.frequency_penalty = sampling.frequency_penalty
        self.presence_penalty = sampling.presence_penalty
        self.penalised = (self.repeat_penalty != 1.0 or bool(self.frequency_penalty)
                          or bool(self.presence_penalty))
        self.window = PenaltyWindow(prompt) if self.penalised else None
        self.end_tokens = end_tokens
        self._end_set = frozenset(end_tokens.tolist())
        self._margin = _FIRST_MARGIN
        self.ban_always = ban_always
        self.rng = np.random.Generator(np.random.PCG64(seed))

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def close(self) -> None:
        """Nothing native to free; here for the sampler protocol."""

    def accept(self, token: int) -> None:
        """A token was emitted: the penalties see it from now on."""
        if self.window is not None:
            self.window.accept(token)

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, logits: np.ndarray, ban_end: bool, draft: Optional[int] = None) -> int:
        """The next token. With a `draft` token (speculative decoding), the draft is kept with probability
        p(draft) and otherwise a token is drawn from p without it: the result follows p exactly."""
        ban_end = ban_end or self.ban_always
        if self.greedy and self.window is None and not ban_end:
            token = int(np.argmax(logits))  # plain greedy: one pass over the view
            return token
        ids, probs = self.distribution(logits, ban_end)
        if self.greedy:
            token = int(ids[0])
        elif draft is None:
            token = self._draw(ids, probs)
        else:
            hit = np.flatnonzero(ids == draft)
            p_draft = float(probs[hit[0]]) if hit.size else 0.0
            if p_draft > 0 and self.rng.random() < p_draft:
                token = draft
            elif p_draft >= 1.0:
                token = draft  # nothing else is possible
            else:
                rest = probs.copy()
                if hit.size:
                    rest[hit[0]] = 0.0
                token = self._draw(ids, rest)
        self.accept(token)
        return token

    def _draw(self, ids: np.ndarray, probs: np.ndarray) -> int:
        cumulative = np.cumsum(probs)
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        return int(ids[min(index, len(ids) - 1)])

    def distribution(self, logits: np.ndarray, ban_end: bool) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, probabilities) the chain leaves for this logits row, most likely first."""
        ids, values, full_z = self._candidates(logits, ban_end)
        order = np.argsort(-values, kind="stable")
        ids, values = ids[order], values[order]
        if self.greedy:
            return ids[:1], np.ones(1)
        if 0 < self.top_k < len(ids):
            ids, values = ids[:self.top_k], values[:self.top_k]
            full_z = None  # top-p normalises over the top-k set, which is all here
        if self.top_p < 1.0:
            weights = np.exp(values.astype(np.float64) - values[0])
            total = full_z if full_z is not None else weights.sum()
            reached = np.flatnonzero(np.cumsum(weights) / total >= self.top_p)
            keep = int(reached[0]) + 1 if reached.size else len(ids)
            ids, values = ids[:keep], values[:keep]
        if self.min_p > 0:
            keep = max(1, int(np.count_nonzero(values >= values[0] + math.log(self.min_p))))
            ids, values = ids[:keep], values[:keep]
        scaled = values.astype(np.float64) / self.temperature
        weights = np.exp(scaled - scaled[0])
        return ids, weights / weights.sum()

    # --- the candidate set --------------------------------------------------------------------
    def _candidates(self, logits: np.ndarray, ban_end: bool) -> tuple[np.ndarray, np.ndarray, Optional[float]]:
        """Token ids and (penalised) logits of a set holding every token the chain may keep, and, when top-p
        runs over the whole vocabulary (no top-k), that vocabulary's softmax normaliser relative to the best."""
        seen_ids, seen_values = self._penalised(logits)
        excluded = seen_ids
        if ban_end:
            excluded = np.union1d(seen_ids, self.end_tokens)
            if seen_ids.size:
                keep = ~np.isin(seen_ids, self.end_tokens)
                seen_ids, seen_values = seen_ids[keep], seen_values[keep]
        skip = self._end_set if ban_end else frozenset()
        if seen_ids.size:
            skip = skip | frozenset(seen_ids.tolist())
        peak = float(logits.max())
        # Without top-k, top-p normalises over the whole vocabulary: one pass over it, relative to `peak`.
        whole_z = None
        if self.top_k <= 0 and self.top_p < 1.0 and not self.greedy:
            whole_z = self._normaliser(logits, peak, excluded, seen_values)
        margin = self._margin  # the last margin that sufficed: rows of one request look alike
        while True:
            threshold = peak - margin
            above = np.flatnonzero(logits >= threshold)
            if skip and above.size < 4096:  # a few tokens: a set lookup beats numpy's setup per call
                above = np.array([t for t in above.tolist() if t not in skip], dtype=np.intp)
            elif skip:
                above = above[~np.isin(above, excluded)]
            ids = np.concatenate((above, seen_ids))
            values = np.concatenate((logits[above], seen_values))
            everything = above.size + excluded.size >= logits.size or not math.isfinite(threshold)
            if everything or self._complete(values, threshold, peak, whole_z):
                break
            margin *= 2
        self._margin = max(_FIRST_MARGIN, margin / 2) if margin > self._margin else margin
        if whole_z is not None and values.size:
            whole_z *= math.exp(peak - float(values.max()))  # relative to the best kept token
        return ids, values, whole_z

    def _complete(self, values: np.ndarray, threshold: float, peak: float, whole_z: Optional[float]) -> bool:
        """Whether no token below `threshold` (all unseen and unbanned) could change the chain's result."""
        if not values.size:
            return False
        best = float(values.max())
        if best < threshold:
            return False  # a token below the threshold may be the best one
        if self.greedy:
            return True
        # min-p keeps only tokens within log(min_p) of the best: every one of them is in the set.
        min_p_inside = self.min_p > 0 and best + math.log(self.min_p) >= threshold
        above = values >= threshold
        if self.top_k > 0 and (self.top_p < 1.0 or not min_p_inside):
            # top-p normalises over the top-k set, so that whole set must be here.
            return int(np.count_nonzero(above)) >= self.top_k
        if min_p_inside:
            return True
        if whole_z is not None:
            # top-p's prefix lies above the threshold once the tokens there reach top_p of the mass.
            mass = float(np.exp(values[above].astype(np.float64) - peak).sum())
            return mass >= self.top_p * whole_z
        return False  # temperature alone over the vocabulary: every token counts

    @staticmethod
    def _normaliser(logits: np.ndarray, reference: float, excluded: np.ndarray, seen_values: np.ndarray) -> float:
        """Sum over the vocabulary of exp(logit - reference), banned tokens out and penalised ones adjusted."""
        total = float(np.exp(logits.astype(np.float64) - reference).sum())
        if excluded.size:
            total -= float(np.exp(logits[excluded].astype(np.float64) - reference).sum())
        total += float(np.exp(seen_values.astype(np.float64) - reference).sum())
        return total

    def _penalised(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tokens in the penalty window and their logits after llama.cpp's penalties."""
        if self.window is None or not self.window.counts:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float32)
        ids = np.fromiter(self.window.counts.keys(), dtype=np.intp, count=len(self.window.counts))
        counts = np.fromiter(self.window.counts.values(), dtype=np.float32, count=len(ids))
        raw = logits[ids].astype(np.float32)
        adjusted = np.where(raw <= 0, raw * self.repeat_penalty, raw / self.repeat_penalty)
        adjusted = adjusted - counts * self.frequency_penalty - self.presence_penalty
        return ids, adjusted.astype(np.float32)
