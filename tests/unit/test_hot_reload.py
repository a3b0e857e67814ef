"""Engine.reconfigure on the scripted back-end: a new runner loads beside the old, the old drains, failures keep it."""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable

import pytest

from ollama_server.engine.runner import RetiredError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import services

GUARD_S = 30.0  # failure guard only: every wait below ends as soon as its condition holds


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a predicate; the deadline only turns a hang into a failure."""
    done = threading.Event()
    for _ in range(int(GUARD_S / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def engine(make_app):
    app = make_app(parallel_slots=1)
    with app.app_context():
        yield services().engine


def fed_text(model) -> str:
    """Every token a fake model was given to decode, as text."""
    return "".join(chr(t) for batch in model.batches for entry in batch for t in entry.tokens)


def test_a_held_stream_finishes_on_the_old_model_and_later_requests_run_on_the_new_one(engine, fake_backend):
    engine.load("tiny")
    old = fake_backend.loaded[-1]
    fake_backend.gate.clear()  # hold every decode step
    fake_backend.enqueue("hello world")
    held = engine.submit(GenerateRequest(model="tiny", prompt="A"))
    wait_until(lambda: held.state == "running", "the held request to start")

    engine.reconfigure(dataclasses.replace(engine.settings, batch_size=64, default_context_size=128, gpu_layers=7))
    assert engine.wait_for_reload(GUARD_S)
    assert engine.reload_status() == {"state": "idle", "models": {"tiny:latest": "ready"}, "generation": 1}
    new = fake_backend.loaded[-1]
    assert new is not old
    assert (new.options.n_batch, new.options.n_ctx, new.options.n_gpu_layers) == (64, 128, 7)
    assert held.state == "running" and not old.closed  # still draining: its stream is not done

    fake_backend.enqueue("fresh")
    after = engine.submit(GenerateRequest(model="tiny", prompt="B"))
    fake_backend.gate.set()
    assert collect("tiny", held).text == "hello world"
    assert collect("tiny", after).text == "fresh"
    assert "A" in fed_text(old) and "B" not in fed_text(old)
    assert "B" in fed_text(new) and "A" not in fed_text(new)
    wait_until(lambda: old.closed, "the drained runner to free its model")
    assert not new.closed
    assert engine.loaded_facts("tiny:latest").context_length == 128


def test_a_request_queued_behind_the_held_one_also_finishes_on_the_old_model(engine, fake_backend):
    engine.load("tiny")
    old = fake_backend.loaded[-1]
    fake_backend.gate.clear()
    fake_backend.enqueue("first")
    running = engine.submit(GenerateRequest(model="tiny", prompt="A"))
    wait_until(lambda: running.state == "running", "the first request to start")
    fake_backend.enqueue("second")
    queued = engine.submit(GenerateRequest(model="tiny", prompt="Q"))  # one slot: it waits

    engine.reconfigure(dataclasses.replace(engine.settings, batch_size=32))
    assert engine.wait_for_reload(GUARD_S)
    fake_backend.gate.set()
    assert collect("tiny", running).text == "first"
    assert collect("tiny", queued).text == "second"
    assert "Q" in fed_text(old)
    wait_until(lambda: old.closed, "the drained runner to free its model")


def test_requests_during_the_reload_are_served_by_the_old_model(engine, fake_backend):
    engine.load("tiny")
    old = fake_backend.loaded[-1]
    fake_backend.load_gate.clear()  # the new instance is still loading
    engine.reconfigure(dataclasses.replace(engine.settings, threads=3))
    assert engine.reload_status() == {"state": "reloading", "models": {"tiny:latest": "reloading"},
                                      "generation": 1}
    fake_backend.enqueue("still here")
    assert collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="C"))).text == "still here"
    assert "C" in fed_text(old)
    fake_backend.load_gate.set()
    assert engine.wait_for_reload(GUARD_S)
    assert fake_backend.loaded[-1].options.n_threads == 3


def test_a_failed_reload_keeps_the_old_model_serving_and_reports_the_error(engine, fake_backend):
    engine.load("tiny")
    old = fake_backend.loaded[-1]
    fake_backend.load_error = RuntimeError("CUDA out of memory")
    engine.reconfigure(dataclasses.replace(engine.settings, gpu_layers=10))
    assert engine.wait_for_reload(GUARD_S)
    assert engine.reload_status() == {"state": "idle", "models": {"tiny:latest": "failed: CUDA out of memory"},
                                      "generation": 1}
    fake_backend.load_error = None
    fake_backend.enqueue("old one")
    assert collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="D"))).text == "old one"
    assert fake_backend.loaded == [old] and not old.closed
    assert not engine.pool.has_failed("tiny:latest")  # the model still works: it is not skipped as broken


def test_a_configuration_that_changes_no_load_option_reloads_nothing(engine, fake_backend):
    engine.load("tiny")
    engine.reconfigure(dataclasses.replace(engine.settings, request_timeout=99.0))
    assert engine.wait_for_reload(GUARD_S)
    assert engine.reload_status()["models"] == {"tiny:latest": "ready"}
    assert len(fake_backend.loaded) == 1 and engine.settings.request_timeout == 99.0


def test_a_model_loaded_after_reconfigure_gets_the_new_options(engine, fake_backend):
    engine.reconfigure(dataclasses.replace(engine.settings, parallel_slots=3, batch_size=16))
    assert engine.reload_status() == {"state": "idle", "models": {}, "generation": 1}
    engine.load("big")
    assert (fake_backend.loaded[-1].options.n_slots, fake_backend.loaded[-1].options.n_batch) == (3, 16)


def test_a_replaced_runner_refuses_new_work_with_a_retired_error(engine, fake_backend):
    engine.load("tiny")
    old_runner = engine.pool._runners["tiny:latest"]
    fake_backend.gate.clear()
    fake_backend.enqueue("x")
    held = engine.submit(GenerateRequest(model="tiny", prompt="A"))
    engine.reconfigure(dataclasses.replace(engine.settings, batch_size=8))
    assert engine.wait_for_reload(GUARD_S)
    with pytest.raises(RetiredError):
        old_runner.enqueue(held)
    fake_backend.gate.set()
    assert collect("tiny", held).text == "x"


def test_each_reconfigure_counts_a_generation_and_the_last_one_wins(engine, fake_backend):
    engine.load("tiny")
    fake_backend.load_gate.clear()
    engine.reconfigure(dataclasses.replace(engine.settings, batch_size=100))
    engine.reconfigure(dataclasses.replace(engine.settings, batch_size=200))
    fake_backend.load_gate.set()
    assert engine.wait_for_reload(GUARD_S)
    assert fake_backend.loaded[-1].options.n_batch == 200
    assert engine.reload_status()["generation"] == 2
    assert engine.reload_status()["models"] == {"tiny:latest": "ready"}
