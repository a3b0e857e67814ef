"""Background (job) requests wait behind interactive ones for a free slot; each class keeps its queue order."""
from __future__ import annotations

import pytest

from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import services


@pytest.fixture
def engine(make_app):
    app = make_app(max_queue=8)
    with app.app_context():
        yield services().engine


def admitted_prompts(fake_backend) -> list[str]:
    """Prompts in the order the engine thread gave them a slot (the fake records each sampler it builds)."""
    return ["".join(chr(t) for t in prompt) for _, prompt, _ in fake_backend.history]


def submit_all(engine, fake_backend, specs: list[tuple[str, bool]]) -> None:
    """Hold the one slot with a first request, queue `specs` (prompt, background) behind it, then let all run."""
    fake_backend.gate.clear()
    generations = [engine.submit(GenerateRequest(model="tiny", prompt="first", max_tokens=2))]
    generations += [engine.submit(GenerateRequest(model="tiny", prompt=prompt, max_tokens=2, background=background))
                    for prompt, background in specs]
    fake_backend.gate.set()
    for generation in generations:
        collect("tiny", generation)


def test_an_interactive_request_queued_after_background_ones_gets_the_free_slot_first(engine, fake_backend):
    submit_all(engine, fake_backend, [("job-1", True), ("job-2", True), ("chat", False)])
    assert admitted_prompts(fake_backend) == ["first", "chat", "job-1", "job-2"]


def test_each_class_keeps_its_queue_order(engine, fake_backend):
    submit_all(engine, fake_backend, [("job-1", True), ("chat-1", False), ("job-2", True), ("chat-2", False),
                                      ("job-3", True)])
    assert admitted_prompts(fake_backend) == ["first", "chat-1", "chat-2", "job-1", "job-2", "job-3"]


def test_background_requests_alone_run_in_the_order_they_came(engine, fake_backend):
    submit_all(engine, fake_backend, [("job-1", True), ("job-2", True), ("job-3", True)])
    assert admitted_prompts(fake_backend) == ["first", "job-1", "job-2", "job-3"]


def test_a_background_request_generates_like_any_other(engine, fake_backend):
    fake_backend.enqueue("4")
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt="2+2=", background=True)))
    assert result.text == "4" and result.finish_reason == "stop"


def test_with_several_free_slots_interactive_requests_are_admitted_first_in_one_step(make_app, fake_backend):
    app = make_app(max_queue=8, parallel_slots=2)
    with app.app_context():
        engine = services().engine
        fake_backend.gate.clear()
        held = [engine.submit(GenerateRequest(model="tiny", prompt=p, max_tokens=2)) for p in ("a", "b")]
        queued = [engine.submit(GenerateRequest(model="tiny", prompt=p, max_tokens=2, background=bg))
                  for p, bg in (("job-1", True), ("job-2", True), ("chat-1", False), ("chat-2", False))]
        fake_backend.gate.set()
        for generation in held + queued:
            collect("tiny", generation)
    order = admitted_prompts(fake_backend)
    assert set(order[:2]) == {"a", "b"}
    assert order[2:] == ["chat-1", "chat-2", "job-1", "job-2"]



@pytest.mark.parametrize("every", [4, 1])
def test_while_an_interactive_request_decodes_a_background_one_joins_one_step_in_background_every(
        make_app, fake_backend, every):
    app = make_app(parallel_slots=2, max_queue=8, background_every=every)
    with app.app_context():
        engine = services().engine
        fake_backend.gate.clear()  # both are admitted before the first step
        fake_backend.enqueue("i" * 40)   # replies go in admission order: the chat is queued (and admitted) first
        fake_backend.enqueue("b" * 200)
        chat = engine.submit(GenerateRequest(model="tiny", prompt="chat", max_tokens=40))
        job = engine.submit(GenerateRequest(model="tiny", prompt="job", max_tokens=200, background=True))
        fake_backend.gate.set()
        assert collect("tiny", chat).text == "i" * 40
        assert collect("tiny", job).text == "b" * 200
    batches = fake_backend.loaded[0].batches
    seq_of = {len(entry.tokens): entry.seq for batch in batches for entry in batch if len(entry.tokens) > 1}
    chat_seq, job_seq = seq_of[len("chat")], seq_of[len("job")]
    chat_steps = [batch for batch in batches if any(entry.seq == chat_seq for entry in batch)]
    shared = [batch for batch in chat_steps if any(entry.seq == job_seq for entry in batch)]
    assert len(chat_steps) >= 40
    # Never starved, never more than one step in `every` while the chat runs; alone, every step.
    assert len(chat_steps) // every - 1 <= len(shared) <= len(chat_steps) // every + 1
    alone = [batch for batch in batches if all(entry.seq == job_seq for entry in batch)]
    assert len(alone) + len(shared) >= 200
