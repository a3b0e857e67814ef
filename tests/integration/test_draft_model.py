"""DraftModel on the real bundled Gemma, used as its own draft: its proposals must be the main model's greedy tokens."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pytest

from ollama_server.engine.backend import DecodeEntry
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.draft_model import DraftModel
from ollama_server.engine.llama_backend import LlamaBatchModel

N_CTX = 1024


@pytest.fixture(scope="module")
def main_model(bundled_gguf):
    model = LlamaBatchModel(str(bundled_gguf), LoadOptions(n_ctx=N_CTX, n_slots=1, n_threads=2))
    yield model
    model.close()


@pytest.fixture(scope="module")
def shared_draft(bundled_gguf):
    draft = DraftModel(str(bundled_gguf), n_slots=2, n_ctx=N_CTX, n_threads=2)
    yield draft
    draft.close()


@pytest.fixture
def draft(shared_draft):
    """The module's draft model with both sequences forgotten, so each test starts from an empty cache."""
    for seq in range(shared_draft.n_slots):
        shared_draft.release(seq)
    return shared_draft


def greedy(model: LlamaBatchModel, history: Sequence[int], n: int) -> list[int]:
    """The main model's own greedy continuation: history in chunks, then one token per decode, argmax."""
    model.forget(0, 0)
    row = None
    for start in range(0, len(history), 512):
        chunk = list(history[start:start + 512])
        last = start + len(chunk) >= len(history)
        row = model.decode([DecodeEntry(seq=0, tokens=chunk, start_pos=start, want_logits=last)])[0]
    out: list[int] = []
    for pos in range(len(history), len(history) + n):
        token = int(np.argmax(model._logits(row)))
        out.append(token)
        if model.is_end_of_generation(token):
            break
        row = model.decode([DecodeEntry(seq=0, tokens=[token], start_pos=pos, want_logits=True)])[0]
    return out


def test_it_reports_the_vocabulary_size_of_its_model(draft, main_model):
    assert draft.vocab_size == main_model.facts.vocab_size > 0


def test_its_proposals_are_the_main_models_greedy_continuation(draft, main_model):
    history = main_model.tokenize("The capital of France is", True)
    expected = greedy(main_model, history, 8)
    before = draft.evaluated_tokens
    assert draft.propose(0, history, 8) == expected
    # The history plus every proposal but the last is fed (the last one's logits are never needed).
    assert draft.evaluated_tokens - before == len(history) + 7


def test_a_second_propose_after_accepted_tokens_evaluates_only_the_new_tokens(draft, main_model):
    history = main_model.tokenize("Water boils at a temperature of", True)
    expected = greedy(main_model, history, 9)
    before = draft.evaluated_tokens
    assert draft.propose(0, history, 4) == expected[:4]
    assert draft.evaluated_tokens - before == len(history) + 3
    # All four accepted, then the main model's own next token: history grew by five.
    grown = history + expected[:5]
    before = draft.evaluated_tokens
    assert draft.propose(0, grown, 4) == expected[5:9]
    # Held: history + three drafts; new: the fourth draft and the main token (2), then three more drafts.
    assert draft.evaluated_tokens - before == 2 + 3


def test_after_a_rejection_it_drops_the_rejected_tokens_and_proposes_from_the_new_history(draft, main_model):
    history = main_model.tokenize("My favourite fruit is the", True)
    first = greedy(main_model, history, 6)
    assert draft.propose(0, history, 6) == first
    other = main_model.tokenize(" banana", False)[0]
    assert other != first[2]
    diverged = history + first[:2] + [other]  # two accepted, the third rejected and replaced by the main model
    expected = greedy(main_model, diverged, 6)
    before = draft.evaluated_tokens
    assert draft.propose(0, diverged, 6) == expected
    assert draft.evaluated_tokens - before == 1 + 5  # only the replacement is new, then five drafts fed


def test_two_sequences_keep_independent_caches(draft, main_model):
    a = main_model.tokenize("The largest planet in the solar system is", True)
    b = main_model.tokenize("def add(a, b):\n    return", True)
    expected_a = greedy(main_model, a, 7)
    expected_b = greedy(main_model, b, 3)
    assert draft.propose(0, a, 3) == expected_a[:3]
    assert draft.propose(1, b, 3) == expected_b
    grown = a + expected_a[:4]
    before = draft.evaluated_tokens
    assert draft.propose(0, grown, 3) == expected_a[4:7]
    assert draft.evaluated_tokens - before == 2 + 2  # seq 1's decodes did not disturb seq 0's cache


def test_it_proposes_nothing_and_evaluates_nothing_when_max_tokens_is_zero(draft, main_model):
    history = main_model.tokenize("Hello", True)
    before = draft.evaluated_tokens
    assert draft.propose(0, history, 0) == []
    assert draft.propose(0, history, -3) == []
    assert draft.evaluated_tokens == before


def test_it_proposes_nothing_when_the_history_leaves_no_room_in_the_context(draft, main_model):
    words = main_model.tokenize("one two three four five six seven eight nine ten " * 120, True)
    max_tokens = 4
    longest = N_CTX - max_tokens - 1
    before = draft.evaluated_tokens
    assert draft.propose(0, words[:longest + 1], max_tokens) == []
    assert draft.evaluated_tokens == before
    # One token shorter fits: caught up in chunks of 512 and still the main model's greedy tokens.
    assert draft.propose(0, words[:longest], max_tokens) == greedy(main_model, words[:longest], max_tokens)
    # A divergence past the sliding window (512 for Gemma 3) is still cut cleanly: full SWA history is kept.
    diverged = words[:longest - 2] + main_model.tokenize(" zebra crossing", False)[:2]
    before = draft.evaluated_tokens
    assert draft.propose(0, diverged, max_tokens) == greedy(main_model, diverged, max_tokens)
    assert draft.evaluated_tokens - before == 2 + (max_tokens - 1)


def test_release_makes_the_next_propose_evaluate_from_scratch(draft, main_model):
    history = main_model.tokenize("Once upon a time", True)
    proposed = draft.propose(0, history, 3)
    assert len(proposed) == 3
    draft.release(0)
    before = draft.evaluated_tokens
    assert draft.propose(0, history, 3) == proposed
    assert draft.evaluated_tokens - before == len(history) + 2


def test_it_stops_proposing_at_an_end_of_generation_token(draft, main_model):
    history = main_model.tokenize("Thank you for reading!<eos>", True)
    continuation = greedy(main_model, history, 20)
    assert main_model.is_end_of_generation(continuation[-1]), "this prompt no longer ends within 20 tokens"
    assert len(continuation) > 1
    assert draft.propose(0, history, 20) == continuation[:-1]


def test_a_failed_decode_returns_nothing_logs_a_warning_and_resets_that_sequence(draft, main_model, caplog):
    history = main_model.tokenize("The sun rises in the", True)
    expected = greedy(main_model, history, 3)
    assert draft.propose(0, history, 3) == expected
    broken = history + [draft.vocab_size]  # a token id past the vocabulary: llama_decode refuses the batch
    with caplog.at_level(logging.WARNING, logger="ollama_server.engine.draft_model"):
        assert draft.propose(0, broken, 3) == []
    assert "decode failed for seq 0" in caplog.text
    before = draft.evaluated_tokens
    assert draft.propose(0, history, 3) == expected
    assert draft.evaluated_tokens - before == len(history) + 2  # nothing was trusted from before the failure


def test_it_refuses_a_sequence_number_outside_its_slots(draft, main_model):
    with pytest.raises(ValueError, match="seq must be in"):
        draft.propose(2, main_model.tokenize("Hi", True), 2)


def test_close_after_the_last_propose_frees_it_and_a_second_close_does_nothing(bundled_gguf, main_model):
    draft = DraftModel(str(bundled_gguf), n_slots=1, n_ctx=256, n_threads=2)
    history = main_model.tokenize("Paris is the capital of", True)
    assert draft.propose(0, history, 2) == greedy(main_model, history, 2)
    draft.close()
    draft.close()
