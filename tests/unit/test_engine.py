"""Engine behaviour on the scripted back-end: limits, queueing, cancellation, model choice."""
import threading
import time

import pytest

from ollama_server.engine.types import BusyError
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import collect
from ollama_server.services import services


@pytest.fixture
def engine(make_app):
    app = make_app(max_queue=1)
    with app.app_context():
        yield services().engine


def test_it_streams_the_reply_and_reports_usage(engine, fake_backend):
    fake_backend.enqueue("Paris")
    generation = engine.submit(GenerateRequest(model="tiny", prompt="Capital?"))
    result = collect(generation.model, generation)
    assert result.text == "Paris"
    assert result.finish_reason == "stop" and result.stop_kind == "eos"
    assert result.usage.prompt_tokens == len("Capital?")
    assert result.usage.completion_tokens == 5


def test_no_model_named_means_the_smallest(engine, fake_backend):
    fake_backend.enqueue("ok")
    generation = engine.submit(GenerateRequest(model=None, prompt="x"))
    assert generation.model == "tiny:latest"
    collect(generation.model, generation)


def test_an_unknown_model_is_not_found(engine):
    with pytest.raises(ModelNotFoundError):
        engine.submit(GenerateRequest(model="nope", prompt="x"))


def test_max_tokens_ends_with_length(engine, fake_backend):
    fake_backend.enqueue("abcdefgh")
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="x", max_tokens=3)))
    assert result.text == "abc"
    assert result.finish_reason == "length"


def test_a_stop_string_ends_the_text_before_it(engine, fake_backend):
    fake_backend.enqueue("one two three")
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="x", stop=(" t",))))
    assert result.text == "one"
    assert result.finish_reason == "stop" and result.stop_kind == "stop_sequence"


def test_a_prompt_longer_than_the_context_is_rejected_with_numbers(engine):
    with pytest.raises(ContextLengthError) as caught:
        engine.submit(GenerateRequest(model="tiny", prompt="x" * 300))
    assert "256" in caught.value.message and "300" in caught.value.message


def test_prompt_plus_max_tokens_over_the_context_is_rejected(engine):
    with pytest.raises(ContextLengthError, match="250 in the completion"):
        engine.submit(GenerateRequest(model="tiny", prompt="x" * 10, max_tokens=250))


def test_chat_messages_are_templated(engine, fake_backend):
    fake_backend.enqueue("hi")
    collect("tiny", engine.submit(GenerateRequest(model="tiny", messages=(Message("user", "hello"),))))
    prompt = "".join(chr(t) for t in fake_backend.history[-1][1])
    assert prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"


def test_it_answers_busy_at_once_when_the_queue_is_full(engine, fake_backend):
    fake_backend.gate.clear()  # hold the running request
    running = engine.submit(GenerateRequest(model="tiny", prompt="a", max_tokens=5))
    queued = engine.submit(GenerateRequest(model="tiny", prompt="b", max_tokens=5))
    started = time.monotonic()
    with pytest.raises(BusyError):
        engine.submit(GenerateRequest(model="tiny", prompt="c", max_tokens=5))
    assert time.monotonic() - started < 1.0
    fake_backend.gate.set()
    collect("tiny", running)
    collect("tiny", queued)


def test_cancel_frees_the_model_for_the_next_request(engine, fake_backend):
    fake_backend.token_delay_s = 0.01
    fake_backend.enqueue("x" * 10000, end=False)
    first = engine.submit(GenerateRequest(model="tiny", prompt="a", max_tokens=200))
    iterator = iter(first)
    next(iterator)
    first.cancel()
    assert first.wait_finished(timeout=2.0)
    assert first.state == "cancelled"
    fake_backend.enqueue("next")
    second = engine.submit(GenerateRequest(model="tiny", prompt="b"))
    assert collect("tiny", second).text == "next"


def test_a_request_past_its_timeout_is_stopped(make_app, fake_backend):
    app = make_app(request_timeout=0.2)
    fake_backend.token_delay_s = 0.02
    fake_backend.enqueue("x" * 1000, end=False)
    with app.app_context():
        generation = services().engine.submit(GenerateRequest(model="tiny", prompt="a", max_tokens=200))
        with pytest.raises(RequestTimeoutError):
            collect("tiny", generation)
        assert generation.wait_finished(timeout=2.0)


def test_least_recently_used_model_is_unloaded_beyond_the_limit(make_app, fake_backend):
    app = make_app(max_loaded_models=1)
    with app.app_context():
        engine = services().engine
        collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a")))
        collect("big", engine.submit(GenerateRequest(model="big", prompt="a")))
        assert [m.name for m in engine.snapshot().models] == ["big:latest"]
        assert fake_backend.loaded[0].closed


def test_concurrent_submissions_load_a_model_once(engine, fake_backend):
    threads = [threading.Thread(target=lambda: collect("big", engine.submit(
        GenerateRequest(model="big", prompt="a", max_tokens=1)))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for m in fake_backend.loaded if m.path.endswith("big.gguf")) == 1


def test_a_failed_load_is_not_retried_during_the_cooldown(make_app, fake_backend):
    from ollama_server.engine.types import ModelLoadError
    app = make_app(model_load_cooldown=60)
    attempts = []

    def broken_load(path, options):
        attempts.append(path)
        raise RuntimeError("corrupt tensor data")
    fake_backend.load = broken_load
    with app.app_context():
        engine = services().engine
        for _ in range(3):
            with pytest.raises(ModelLoadError, match="corrupt tensor data"):
                engine.submit(GenerateRequest(model="tiny", prompt="a"))
    assert len(attempts) == 1


def test_a_failed_load_is_retried_after_the_cooldown(make_app, fake_backend):
    from ollama_server.engine.types import ModelLoadError
    app = make_app(model_load_cooldown=0)
    real_load, calls = fake_backend.load, []

    def flaky_load(path, options):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("disk hiccup")
        return real_load(path, options)
    fake_backend.load = flaky_load
    with app.app_context():
        engine = services().engine
        with pytest.raises(ModelLoadError):
            engine.submit(GenerateRequest(model="tiny", prompt="a"))
        fake_backend.enqueue("ok")
        assert collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a"))).text == "ok"


def test_a_larger_num_ctx_reloads_an_idle_model_up_to_the_trained_context(engine, fake_backend):
    collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a")))
    assert engine.snapshot().models[0].context_length == 256
    collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a", num_ctx=1024)))
    # the placeholder file has no GGUF header, so the trained context is unknown: the default caps it
    assert engine.snapshot().models[0].context_length == 256
    assert len(fake_backend.loaded) == 1


def test_num_ctx_reload_uses_min_of_request_and_trained(make_app, fake_backend):
    app = make_app()
    with app.app_context():
        engine = services().engine
        engine.pool._trained_context = lambda path: 2048
        collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a")))
        collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a", num_ctx=1024)))
        assert engine.snapshot().models[0].context_length == 1024
        collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="a", num_ctx=99999)))
        assert engine.snapshot().models[0].context_length == 2048
        assert [m.closed for m in fake_backend.loaded] == [True, True, False]
