"""Engine.score on the scripted back-end: the prompt fed, the losses, the limits, the record; the scorer's chunks."""
from __future__ import annotations

import math
import threading

import pytest

from ollama_server.engine.llama_scorer import chunks
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import Message
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.services import services
from tests.fakes.backend import fake_logprob


@pytest.fixture
def engine(make_app):
    app = make_app()
    with app.app_context():
        yield services().engine


def expected_logprobs(text: str) -> tuple[float, ...]:
    """What the fake gives a continuation: one token per character."""
    return tuple(fake_logprob(ord(c)) for c in text)


def test_it_returns_the_summed_and_mean_nll_of_the_continuation_tokens(engine):
    result = engine.score(GenerateRequest(model="tiny", prompt="2+2="), " 4")
    wanted = expected_logprobs(" 4")
    assert result.model == "tiny:latest"
    assert result.tokens == 2 and result.prompt_tokens == 4
    assert result.logprobs == wanted
    assert math.isclose(result.nll, -sum(wanted))
    assert math.isclose(result.mean_nll, -sum(wanted) / 2)


def test_it_scores_the_continuation_after_the_rendered_chat_template(engine, fake_backend):
    request = GenerateRequest(model="tiny", messages=(Message("user", "Capital of France?"),))
    result = engine.score(request, "Paris")
    tokens, first = fake_backend.loaded[-1].scored[-1]
    template = "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
    assert "".join(chr(t) for t in tokens) == template + "Paris"
    assert first == len(template) == result.prompt_tokens


def test_the_prompt_is_exactly_what_a_generation_of_the_same_request_would_be_fed(engine, fake_backend):
    request = GenerateRequest(model="tiny", messages=(Message("system", "Be brief."), Message("user", "Hi")))
    _, prompt = engine.prompt_tokens(request)
    engine.score(request, "Hello")
    tokens, first = fake_backend.loaded[-1].scored[-1]
    assert tokens[:first] == prompt


def test_a_likelier_continuation_has_the_lower_mean_nll(engine):
    request = GenerateRequest(model="tiny", prompt="Q")
    likely, unlikely = engine.score(request, "("), engine.score(request, ")")  # fake: -0.1 and -0.2
    assert likely.mean_nll < unlikely.mean_nll


def test_it_rejects_an_empty_continuation_naming_the_field(engine):
    with pytest.raises(InvalidRequestError) as caught:
        engine.score(GenerateRequest(model="tiny", prompt="x"), "")
    assert caught.value.param == "continuation"


def test_it_rejects_a_prompt_without_tokens_naming_the_prompt(engine):
    with pytest.raises(InvalidRequestError) as caught:
        engine.score(GenerateRequest(model="tiny", prompt=""), "abc")
    assert caught.value.param == "prompt"


def test_it_rejects_prompt_and_continuation_beyond_the_context_with_the_numbers(engine, fake_backend):
    with pytest.raises(InvalidRequestError) as caught:
        engine.score(GenerateRequest(model="tiny", prompt="x" * 250), "y" * 7)
    error = caught.value
    assert error.param == "continuation" and error.code == "context_length_exceeded"
    assert "(250 tokens)" in error.message and "(7 tokens)" in error.message and "256 tokens" in error.message
    assert all(not model.scored for model in fake_backend.loaded)  # refused before any evaluation


def test_a_smaller_num_ctx_lowers_the_limit(engine):
    with pytest.raises(InvalidRequestError, match="context length of 20 tokens"):
        engine.score(GenerateRequest(model="tiny", prompt="x" * 15, num_ctx=20), "y" * 6)
    assert engine.score(GenerateRequest(model="tiny", prompt="x" * 15, num_ctx=20), "y" * 5).tokens == 5


def test_each_call_leaves_one_record_with_the_tokens_it_evaluated(engine):
    before = engine.records.last_seq
    engine.score(GenerateRequest(model="tiny", prompt="abc", dialect="jobs"), "de")
    with pytest.raises(InvalidRequestError):
        engine.score(GenerateRequest(model="tiny", prompt="abc"), "")
    with pytest.raises(ModelNotFoundError):
        engine.score(GenerateRequest(model="nope", prompt="abc"), "de")
    records, _ = engine.records.since(before)
    assert [(r.endpoint, r.outcome, r.error_kind) for r in records] == [
        ("score", "done", None), ("score", "rejected", "invalid_request"), ("score", "failed", "not_found")]
    assert records[0].dialect == "jobs" and records[0].model == "tiny:latest"
    assert records[0].prompt_tokens == 5 and records[0].completion_tokens == 0


def test_scoring_restarts_the_keep_alive_clock(engine):
    engine.score(GenerateRequest(model="tiny", prompt="a"), "b")
    runner = engine.pool._runners["tiny:latest"]
    runner.last_used = 0.0
    engine.score(GenerateRequest(model="tiny", prompt="a"), "b")
    assert runner.last_used > 0.0


def test_scoring_does_not_wait_for_a_generation_holding_the_engine_thread(engine, fake_backend):
    engine.score(GenerateRequest(model="tiny", prompt="a"), "b")  # loads the model
    model = fake_backend.loaded[0]
    original, entered, hold = model.decode, threading.Event(), threading.Event()

    def held_decode(entries):
        entered.set()
        hold.wait()
        return original(entries)
    model.decode = held_decode
    fake_backend.enqueue("xyz")
    generation = engine.submit(GenerateRequest(model="tiny", prompt="q", max_tokens=3))
    try:
        assert entered.wait(timeout=30.0)
        assert engine.score(GenerateRequest(model="tiny", prompt="a"), "bc").tokens == 2
        assert generation.state not in ("done", "failed", "cancelled")
    finally:
        hold.set()
    assert generation.wait_finished(timeout=30.0)


@pytest.mark.parametrize("first,n,n_batch,rows", [(1, 2, 512, 32), (5, 10, 4, 2), (300, 330, 128, 32),
                                                  (2, 200, 64, 7), (100, 101, 16, 32)])
def test_scorer_chunks_cover_every_input_token_once_and_flag_at_most_rows_per_decode(first, n, n_batch, rows):
    spans = list(chunks(first, n, n_batch, rows))
    assert spans[0][0] == 0 and spans[-1][1] == n - 1  # the last token predicts nothing: never decoded
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(0 < end - start <= n_batch for start, end in spans)
    assert all(end - max(start, first - 1) <= rows for start, end in spans)
    flagged = [p for start, end in spans for p in range(max(start, first - 1), end)]
    assert flagged == list(range(first - 1, n - 1))  # one logits row per scored token
