"""The truncated sampler against llama.cpp's own chain on fixed logits: same kept set, same probabilities,
same sampled distribution, and speculative verification that leaves the distribution unchanged."""
from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy as np
import pytest

from ollama_server.engine.sampler import PENALTY_WINDOW
from ollama_server.engine.sampler import TruncatedSampler
from ollama_server.engine.types import SamplingParams

VOCAB = 262_144  # Gemma's: the size the sampler is built for


def gemma_like_logits(seed: int, vocab: int = VOCAB) -> np.ndarray:
    """A long tail of unlikely tokens and a few plausible ones, like a language model's row."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-4.0, 2.0, vocab).astype(np.float32)
    peaks = rng.choice(vocab, 60, replace=False)
    logits[peaks] += rng.uniform(6.0, 14.0, 60).astype(np.float32)
    return logits


def llama_cpp_distribution(logits: np.ndarray, sampling: SamplingParams, history=(), banned=()) -> dict[int, float]:
    """The chain LlamaBatchModel builds, applied by llama.cpp itself; {token: probability} of what it keeps."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    n = len(logits)
    if banned:
        biases = (llama_cpp.llama_logit_bias * len(banned))(*[llama_cpp.llama_logit_bias(t, float("-inf"))
                                                               for t in banned])
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(n, len(banned), biases))
    if sampling.repeat_penalty != 1.0 or sampling.frequency_penalty or sampling.presence_penalty:
        penalties = llama_cpp.llama_sampler_init_penalties(n, PENALTY_WINDOW, sampling.repeat_penalty,
                                                           sampling.frequency_penalty, sampling.presence_penalty)
        llama_cpp.llama_sampler_chain_add(chain, penalties)
    if sampling.temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        if sampling.top_k > 0:
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    for token in history:
        llama_cpp.llama_sampler_accept(chain, token)
    data = (llama_cpp.llama_token_data * n)()
    for index in range(n):
        data[index].id, data[index].logit, data[index].p = index, float(logits[index]), 0.0
    array = llama_cpp.llama_token_data_array(data, n, -1, False)
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(array))
    llama_cpp.llama_sampler_free(chain)
    if array.selected >= 0:  # greedy selects one token
        return {int(data[array.selected].id): 1.0}
    kept = np.array([data[i].logit for i in range(array.size)], dtype=np.float64)
    weights = np.exp(kept - kept.max())
    return {int(data[i].id): float(w) for i, w in zip(range(array.size), weights / weights.sum())}


def ours(logits, sampling, history=(), banned=(), seed=1) -> dict[int, float]:
    sampler = TruncatedSampler(sampling, list(history), np.array(banned, dtype=np.intp), seed)
    ids, probs = sampler.distribution(logits, ban_end=bool(banned))
    return {int(t): float(p) for t, p in zip(ids, probs)}


def assert_same_distribution(expected: dict[int, float], got: dict[int, float]) -> None:
    """Same kept tokens with the same probabilities. Where top-p runs over the whole vocabulary, llama.cpp sums
    262k probabilities in float32 (we sum in float64), so its cut may land a few tail tokens away: there the
    two must still agree to within 1e-3 in total variation and on every token above 1e-3."""
    if set(got) != set(expected):
        tokens = set(got) | set(expected)
        distance = 0.5 * sum(abs(got.get(t, 0.0) - expected.get(t, 0.0)) for t in tokens)
        assert distance < 1e-3, f"total variation {distance}"
        assert {t for t, p in expected.items() if p > 1e-3} <= set(got)
        return
    for token, p in expected.items():
        assert got[token] == pytest.approx(p, rel=1e-4, abs=1e-7)


CHAINS = {
    "ollama_defaults": SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.0),
    "service_defaults": SamplingParams(),
    "min_p_only": SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.05),
    "top_p_without_top_k": SamplingParams(temperature=0.7, top_k=0, top_p=0.95, min_p=0.0),
    "top_p_and_min_p_without_top_k": SamplingParams(temperature=1.3, top_k=0, top_p=0.8, min_p=0.02),
    "small_top_k": SamplingParams(temperature=1.0, top_k=3, top_p=1.0, min_p=0.0),
    "large_top_k": SamplingParams(temperature=0.9, top_k=500, top_p=0.99, min_p=0.0),
    "greedy": SamplingParams(temperature=0.0),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("seed", [0, 1, 3, 4, 5])
def test_it_keeps_the_same_tokens_with_the_same_probabilities_as_llama_cpp(name, seed):
    logits = gemma_like_logits(seed)
    assert_same_distribution(llama_cpp_distribution(logits, CHAINS[name]), ours(logits, CHAINS[name]))


@pytest.mark.parametrize("name", ["ollama_defaults", "min_p_only", "top_p_without_top_k", "greedy"])
def test_it_applies_penalties_like_llama_cpp_to_the_tokens_seen(name):
    logits = gemma_like_logits(7)
    best = [int(t) for t in np.argsort(-logits)[:30]]
    history = best[::2] + best[::3] + [5, 6, 7]  # likely tokens seen once or twice, and unlikely ones
    sampling = SamplingParams(**{**CHAINS[name].__dict__, "repeat_penalty": 1.3, "frequency_penalty": 0.4,
                                 "presence_penalty": 0.6})
    assert_same_distribution(llama_cpp_distribution(logits, sampling, history), ours(logits, sampling, history))


def test_a_negative_penalty_can_raise_a_token_from_the_tail_as_in_llama_cpp():
    logits = gemma_like_logits(3)
    tail = int(np.argmin(logits))
    sampling = SamplingParams(temperature=1.0, top_k=40, top_p=1.0, min_p=0.0, presence_penalty=-40.0)
    expected = llama_cpp_distribution(logits, sampling, [tail])
    assert tail in expected
    assert_same_distribution(expected, ours(logits, sampling, [tail]))


@pytest.mark.parametrize("name", ["ollama_defaults", "greedy", "min_p_only"])
def test_banned_end_tokens_are_never_kept_even_when_they_are_the_best(name):
    logits = gemma_like_logits(4)
    banned = [int(t) for t in np.argsort(-logits)[:2]]
    expected = llama_cpp_distribution(logits, CHAINS[name], banned=banned)
    got = ours(logits, CHAINS[name], banned=banned)
    assert not set(banned) & set(got)
    assert_same_distribution(expected, got)


def test_a_flat_row_falls_back_to_the_whole_vocabulary_and_still_matches():
    logits = np.linspace(0.0, 1.0, 4096, dtype=np.float32)[np.random.default_rng(1).permutation(4096)]
    sampling = SamplingParams(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0)
    assert_same_distribution(llama_cpp_distribution(logits, sampling), ours(logits, sampling))


def chi_square_p_value(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    """Pearson's test (bins expected below 5 pooled), p-value by the Wilson-Hilferty approximation."""
    expected = expected_probs / expected_probs.sum() * observed.sum()
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    statistic = float(((observed - expected) ** 2 / expected).sum())
    df = len(observed) - 1
    z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def draws(sampler: TruncatedSampler, logits: np.ndarray, n: int, draft=None) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _ in range(n):
        token = sampler.sample(logits, ban_end=False, draft=draft)
        counts[token] = counts.get(token, 0) + 1
    return counts


def test_samples_follow_llama_cpp_s_distribution():
    logits = gemma_like_logits(11)
    sampling = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, min_p=0.0)
    expected = llama_cpp_distribution(logits, sampling)
    counts = draws(TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=5), logits, 6000)
    assert set(counts) <= set(expected)
    tokens = sorted(expected)
    p_value = chi_square_p_value(np.array([counts.get(t, 0) for t in tokens]), np.array([expected[t] for t in tokens]))
    assert p_value > 1e-3  # a fixed seed: the same verdict every run


@pytest.mark.parametrize("draft_rank", [0, 1, 5, 10_000])
def test_verifying_a_draft_token_leaves_the_distribution_unchanged(draft_rank):
    """Accept the draft with p(draft), else draw from p without it: overall, the tokens still follow p."""
    logits = gemma_like_logits(12)
    sampling = SamplingParams(temperature=1.0, top_k=20, top_p=0.95, min_p=0.0)
    expected = llama_cpp_distribution(logits, sampling)
    draft = int(np.argsort(-logits)[draft_rank])
    counts = draws(TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=9), logits, 6000, draft=draft)
    assert set(counts) <= set(expected)
    tokens = sorted(expected)
    p_value = chi_square_p_value(np.array([counts.get(t, 0) for t in tokens]), np.array([expected[t] for t in tokens]))
    assert p_value > 1e-3


def test_the_same_seed_gives_the_same_tokens():
    logits = gemma_like_logits(13)
    sampling = SamplingParams(temperature=1.0, top_k=40, top_p=0.95)
    first = [TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=3).sample(logits, False)
             for _ in range(1)]
    one = TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=3)
    two = TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=3)
    assert [one.sample(logits, False) for _ in range(50)] == [two.sample(logits, False) for _ in range(50)]
    assert first[0] == TruncatedSampler(sampling, [], np.empty(0, dtype=np.intp), seed=3).sample(logits, False)


def test_greedy_verification_accepts_the_draft_exactly_when_it_is_the_argmax():
    logits = gemma_like_logits(14)
    best, second = (int(t) for t in np.argsort(-logits)[:2])
    sampler = TruncatedSampler(SamplingParams(temperature=0.0), [], np.empty(0, dtype=np.intp), seed=1)
    assert sampler.sample(logits, False, draft=best) == best
    assert sampler.sample(logits, False, draft=second) == best


def test_it_reads_the_logits_row_without_copying_the_vocabulary():
    """The row is a view into llama.cpp's buffer: sampling must not write to it."""
    logits = gemma_like_logits(15)
    before = logits.copy()
    sampler = TruncatedSampler(SamplingParams(repeat_penalty=1.5), [int(np.argmax(logits))],
                               np.array([1, 2], dtype=np.intp), seed=1)
    sampler.sample(logits, ban_end=True)
    assert np.array_equal(logits, before)
