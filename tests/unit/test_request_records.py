"""Request records: one per request that ended — done, cancelled, failed or rejected — with its numbers."""
import threading

import pytest

from ollama_server.engine.records import RequestLog
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.engine.types import collect
from ollama_server.services import EXTENSION_KEY


def fields(**over):
    base = dict(request_id="r", dialect="openai", endpoint="/v1/completions", model="m", outcome="done",
                error_kind=None, finish_reason="stop", prompt_tokens=3, completion_tokens=2, cached_tokens=0,
                queue_s=0.0, ttft_s=0.1, duration_s=0.2)
    return {**base, **over}


def test_the_log_numbers_records_and_hands_out_only_the_new_ones():
    log = RequestLog(capacity=10, clock=lambda: 123.0)
    first = log.append(**fields(request_id="a"))
    second = log.append(**fields(request_id="b"))
    assert (first.seq, second.seq, second.finished_at) == (1, 2, 123.0)
    assert log.since(0) == ([first, second], 0)
    assert log.since(1) == ([second], 0)
    assert log.since(2) == ([], 0) and log.last_seq == 2


def test_a_reader_that_fell_behind_is_told_how_many_it_missed():
    log = RequestLog(capacity=3)
    for index in range(7):
        log.append(**fields(request_id=str(index)))
    records, dropped = log.since(0)
    assert [r.seq for r in records] == [5, 6, 7] and dropped == 4


def test_records_are_immutable():
    record = RequestLog().append(**fields())
    with pytest.raises(AttributeError):
        record.outcome = "failed"


def test_appends_from_many_threads_get_distinct_sequence_numbers():
    log = RequestLog(capacity=10000)
    threads = [threading.Thread(target=lambda: [log.append(**fields()) for _ in range(200)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records, dropped = log.since(0)
    assert sorted(r.seq for r in records) == list(range(1, 1601)) and dropped == 0


def engine_of(app):
    return app.extensions[EXTENSION_KEY].engine


def test_a_finished_generation_leaves_one_done_record_with_its_numbers(make_app, fake_backend):
    app = make_app()
    engine = engine_of(app)
    fake_backend.enqueue("hello")
    generation = engine.submit(GenerateRequest(model="tiny", prompt="abc", dialect="ollama",
                                               endpoint="/api/generate"), request_id="rec-1")
    collect(generation.model, generation)
    assert generation.wait_finished(10)
    records, _ = engine.records.since(0)
    assert len(records) == 1
    record = records[0]
    assert (record.request_id, record.dialect, record.endpoint, record.model, record.outcome) == \
        ("rec-1", "ollama", "/api/generate", "tiny:latest", "done")
    assert (record.prompt_tokens, record.completion_tokens, record.finish_reason) == (3, 5, "stop")
    assert record.ttft_s is not None and record.duration_s >= record.ttft_s >= record.queue_s >= 0


def test_a_rejected_request_leaves_a_rejected_record_with_the_error_kind(make_app):
    engine = engine_of(make_app())
    with pytest.raises(ModelNotFoundError):
        engine.submit(GenerateRequest(model="nope", prompt="x", dialect="tgi", endpoint="/generate"))
    (record,), _ = engine.records.since(0)
    assert (record.outcome, record.error_kind, record.dialect, record.model) == ("rejected", "not_found", "tgi", "nope")


def test_a_cancelled_generation_leaves_a_cancelled_record(make_app, fake_backend):
    app = make_app()
    engine = engine_of(app)
    fake_backend.enqueue("x" * 50, end=False)
    fake_backend.gate.clear()
    generation = engine.submit(GenerateRequest(model="tiny", prompt="abc", max_tokens=40))
    generation.cancel()
    fake_backend.gate.set()
    assert generation.wait_finished(10)
    (record,), _ = engine.records.since(0)
    assert record.outcome == "cancelled" and record.finish_reason == "cancelled"
