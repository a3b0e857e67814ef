"""Continuous batching on the scripted back-end: shared steps, chunked prompts, prefix reuse, freeing slots."""
import threading

import pytest

from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import collect
from ollama_server.services import services

SAMPLED = SamplingParams(temperature=0.8)  # sampled and unseeded: allowed to reuse cached prefixes


@pytest.fixture
def batched(make_app, fake_backend):
    app = make_app(parallel_slots=4, max_queue=4, default_context_size=4096, batch_size=512)
    with app.app_context():
        yield services().engine, fake_backend


def run_all(engine, requests):
    results = [None] * len(requests)

    def one(i):
        results[i] = collect("tiny", engine.submit(requests[i]))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_running_requests_share_decode_steps(batched):
    engine, fake = batched
    fake.token_delay_s = 0.01  # slow steps: all three are admitted while the first still runs
    for text in ("a" * 30, "b" * 30, "c" * 30):
        fake.enqueue(text)
    run_all(engine, [GenerateRequest(model="tiny", prompt=p) for p in ("1", "2", "3")])
    model = fake.loaded[0]
    assert max(len({e.seq for e in batch}) for batch in model.batches) == 3


def test_each_request_gets_its_own_reply(batched):
    engine, fake = batched
    for text in ("one", "two", "three", "four"):
        fake.enqueue(text)
    results = run_all(engine, [GenerateRequest(model="tiny", prompt=str(i)) for i in range(4)])
    assert sorted(r.text for r in results) == ["four", "one", "three", "two"]


def test_a_long_prompt_is_read_in_chunks_while_others_decode(batched):
    engine, fake = batched
    fake.token_delay_s = 0.001
    fake.enqueue("x" * 40)
    fake.enqueue("ok")
    first = engine.submit(GenerateRequest(model="tiny", prompt="short", max_tokens=40))
    next(iter(first))  # the first request is decoding
    second = engine.submit(GenerateRequest(model="tiny", prompt="p" * 700, max_tokens=2))
    collect("tiny", second)
    collect("tiny", first)
    model = fake.loaded[0]
    prompt_chunks = [len(e.tokens) for batch in model.batches for e in batch if len(e.tokens) > 1]
    assert prompt_chunks and max(prompt_chunks) <= 256
    mixed = [batch for batch in model.batches if len({len(e.tokens) > 1 for e in batch}) == 2]
    assert mixed, "prompt chunks and decode tokens never shared a step"


def test_a_continued_conversation_reuses_its_cached_prefix(batched):
    engine, fake = batched
    fake.enqueue("reply")
    first = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="hello there", sampling=SAMPLED)))
    fake.enqueue("more")
    # The conversation goes on: the prompt now holds the previous prompt, the reply and a new turn.
    second = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="hello there" + "reply" + " and?",
                                                          sampling=SAMPLED)))
    assert first.usage.cached_tokens == 0
    assert second.usage.cached_tokens == len("hello there" + "reply")


def test_greedy_requests_never_reuse_the_cache(batched):
    engine, fake = batched
    greedy = SamplingParams(temperature=0.0)
    collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="same prompt", sampling=greedy)))
    again = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="same prompt", sampling=greedy)))
    assert again.usage.cached_tokens == 0


def test_capacity_is_slots_plus_queue(make_app, fake_backend):
    from ollama_server.engine.types import BusyError
    app = make_app(parallel_slots=2, max_queue=1)
    fake_backend.gate.clear()
    with app.app_context():
        engine = services().engine
        held = [engine.submit(GenerateRequest(model="tiny", prompt="x", max_tokens=2)) for _ in range(3)]
        with pytest.raises(BusyError):
            engine.submit(GenerateRequest(model="tiny", prompt="x", max_tokens=2))
        fake_backend.gate.set()
        for generation in held:
            collect("tiny", generation)


def test_a_cancelled_request_frees_its_slot_for_the_queue(make_app, fake_backend):
    app = make_app(parallel_slots=1, max_queue=1)
    fake_backend.token_delay_s = 0.005
    fake_backend.enqueue("z" * 5000, end=False)
    fake_backend.enqueue("next")
    with app.app_context():
        engine = services().engine
        running = engine.submit(GenerateRequest(model="tiny", prompt="a", max_tokens=200))
        next(iter(running))
        queued = engine.submit(GenerateRequest(model="tiny", prompt="b"))
        assert engine.cancel(running.id)
        assert collect("tiny", queued).text == "next"
        assert running.wait_finished(2) and running.state == "cancelled"
