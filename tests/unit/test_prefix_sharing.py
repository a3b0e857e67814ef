"""Shared prompt prefixes across slots on the scripted back-end: a request copies the cells of another slot
that holds (or is reading) the same prefix instead of evaluating it again, and reports them as cached."""

import pytest

from ollama_server.engine.prefix_sharing import MIN_SHARED
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import collect
from ollama_server.services import services

SAMPLED = SamplingParams(temperature=0.8)
SYSTEM = "You are a careful assistant. " * 30  # 870 tokens on the fake (one per character)


@pytest.fixture
def shared(make_app, fake_backend):
    app = make_app(parallel_slots=4, max_queue=4, default_context_size=4096, batch_size=512)
    with app.app_context():
        yield services().engine, fake_backend


def submit_together(engine, fake, prompts, sampling=SAMPLED):
    """Queue every request while the engine is held, so that they are admitted in the same step."""
    fake.gate.clear()
    first = engine.submit(GenerateRequest(model="tiny", prompt="warm", max_tokens=1))
    generations = [engine.submit(GenerateRequest(model="tiny", prompt=p, sampling=sampling, max_tokens=8))
                   for p in prompts]
    fake.gate.set()
    collect("tiny", first)
    return [collect("tiny", g) for g in generations]


def evaluated_tokens(model, seq):
    return sum(len(e.tokens) for batch in model.batches for e in batch if e.seq == seq)


def test_requests_arriving_together_read_a_shared_system_prompt_once(shared):
    engine, fake = shared
    for _ in range(5):
        fake.enqueue("ok")
    questions = ["What is 2+2?", "Name a colour.", "Say hello."]
    results = submit_together(engine, fake, [SYSTEM + q for q in questions])
    cached = sorted(r.usage.cached_tokens for r in results)
    assert cached[0] == 0  # one of them read the prefix
    assert cached[1:] == [len(SYSTEM)] * 2  # the others copied it
    model = fake.loaded[0]
    assert len(model.copies) == 2
    total = sum(evaluated_tokens(model, seq) for seq in range(4))
    assert total < 2 * len(SYSTEM)  # the prefix was evaluated once, not three times


def test_the_reader_stops_its_chunk_at_the_shared_length_so_the_copy_holds_exactly_the_prefix(shared):
    engine, fake = shared
    for _ in range(3):
        fake.enqueue("ok")
    submit_together(engine, fake, [SYSTEM + "first question", SYSTEM + "second one"])
    model = fake.loaded[0]
    assert len(model.copies) == 1
    reader_positions = [e.start_pos + len(e.tokens) for batch in model.batches for e in batch if len(e.tokens) > 1]
    assert len(SYSTEM) in reader_positions  # a chunk ended exactly where the prefix ends


def test_greedy_and_seeded_requests_never_copy_another_slot(shared):
    engine, fake = shared
    for _ in range(5):
        fake.enqueue("ok")
    results = submit_together(engine, fake, [SYSTEM + "a?", SYSTEM + "b?"], sampling=SamplingParams(temperature=0.0))
    assert [r.usage.cached_tokens for r in results] == [0, 0]
    seeded = submit_together(engine, fake, [SYSTEM + "c?", SYSTEM + "d?"], sampling=SamplingParams(seed=7))
    assert [r.usage.cached_tokens for r in seeded] == [0, 0]
    assert fake.loaded[0].copies == []


def test_a_short_common_start_is_not_worth_a_copy(shared):
    engine, fake = shared
    for _ in range(3):
        fake.enqueue("ok")
    start = "x" * (MIN_SHARED - 2)
    results = submit_together(engine, fake, [start + "one", start + "two"])
    assert fake.loaded[0].copies == []
    assert [r.usage.cached_tokens for r in results] == [0, 0]


def test_a_waiting_request_reads_the_prompt_itself_when_the_reader_is_cancelled(shared):
    engine, fake = shared
    fake.enqueue("ok")
    fake.enqueue("ok")
    fake.gate.clear()
    reader = engine.submit(GenerateRequest(model="tiny", prompt=SYSTEM + "reader", sampling=SAMPLED, max_tokens=4))
    waiter = engine.submit(GenerateRequest(model="tiny", prompt=SYSTEM + "waiter", sampling=SAMPLED, max_tokens=4))
    engine.cancel(reader.id)
    fake.gate.set()
    result = collect("tiny", waiter)
    assert result.text == "ok"
    assert result.usage.cached_tokens == 0  # nothing to copy: it read the prefix itself
    assert collect("tiny", reader).finish_reason == "cancelled"


def test_a_request_copies_from_a_slot_that_already_holds_the_prefix_while_it_decodes(shared):
    engine, fake = shared
    fake.enqueue("z" * 200, end=False)
    fake.enqueue("done")
    fake.token_delay_s = 0.001
    long_running = engine.submit(GenerateRequest(model="tiny", prompt=SYSTEM + "Long", sampling=SAMPLED,
                                                 max_tokens=200))
    stream = iter(long_running)
    next(stream)  # it has read its prompt and decodes
    late = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=SYSTEM + "late", sampling=SAMPLED)))
    assert late.usage.cached_tokens == len(SYSTEM)
    assert late.text == "done"
    for _ in stream:
        pass
