"""Speculative decoding on the scripted back-end: drafts from prompt lookup are verified in one batch, the
output is exactly the undrafted one, rejected tails leave the cache, and poor drafting switches itself off."""
import pytest

from ollama_server.engine.drafting import MAX_DRAFT
from ollama_server.engine.drafting import PROBATION
from ollama_server.engine.drafting import DraftController
from ollama_server.engine.drafting import NgramIndex
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import services

PASSAGE = "the cat sat on the mat and the dog lay on the rug. "


@pytest.fixture
def drafting(make_app, fake_backend):
    fake_backend.drafting = True
    app = make_app(parallel_slots=2, max_queue=4, default_context_size=4096)
    with app.app_context():
        yield services().engine, fake_backend


def drafted_entries(model):
    return [entry for batch in model.batches for entry in batch if entry.all_logits]


def test_a_reply_that_copies_the_prompt_is_verified_several_tokens_per_step(drafting):
    engine, fake = drafting
    reply = "the dog lay on the rug. the cat sat on the mat"
    fake.enqueue(reply)
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=PASSAGE * 2 + "Again: ")))
    assert result.text == reply
    model = fake.loaded[0]
    assert drafted_entries(model)
    assert result.usage.draft_tokens > 0
    assert result.usage.accepted_draft_tokens > result.usage.draft_tokens / 2
    decode_steps = [batch for batch in model.batches if any(len(e.tokens) <= MAX_DRAFT + 1 and e.want_logits
                                                            for e in batch)]
    assert len(decode_steps) < len(reply)  # fewer steps than tokens: drafts were kept


def test_the_output_is_the_same_with_and_without_drafting(make_app, fake_backend):
    reply = "on the mat and the dog lay on the rug. the end"
    texts = []
    for drafting in (False, True):
        fake_backend.drafting = drafting
        fake_backend.enqueue(reply)
        app = make_app(parallel_slots=1)
        with app.app_context():
            result = collect("tiny", services().engine.submit(GenerateRequest(model="tiny", prompt=PASSAGE * 3)))
            texts.append((result.text, result.finish_reason, result.usage.completion_tokens))
            services().engine.close()
    assert texts[0] == texts[1]


def test_a_rejected_draft_tail_is_cut_from_the_cache(drafting):
    engine, fake = drafting
    fake.enqueue("the cat sat on the rug")  # the lookup guesses "mat" after "on the ": a miss
    prompt = PASSAGE
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=prompt)))
    assert result.text == "the cat sat on the rug"
    model = fake.loaded[0]
    assert result.usage.accepted_draft_tokens < result.usage.draft_tokens
    cuts = [pos for seq, pos in model.forgotten if pos > len(prompt)]
    assert cuts, "a rejected draft left its tokens in the cache"


def test_drafting_stops_for_a_request_whose_drafts_are_not_accepted(drafting):
    engine, fake = drafting
    # After every "ab" the lookup proposes what followed "ab" last time; the script always says otherwise.
    reply = "".join("ab" + chr(0x100 + i) for i in range(40))
    fake.enqueue(reply)
    prompt = "ab" + chr(0x500) + "ab" + chr(0x501)
    result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=prompt, max_tokens=len(reply))))
    assert result.text == reply
    assert result.usage.accepted_draft_tokens == 0
    assert 0 < result.usage.draft_tokens < PROBATION + MAX_DRAFT  # tried, then given up
    model = fake.loaded[0]
    last_draft = max(i for i, batch in enumerate(model.batches) if any(e.all_logits for e in batch))
    assert len(model.batches) - last_draft > 30  # the rest of the reply was decoded without drafts


def test_no_drafts_when_more_requests_decode_than_speculative_max_slots(make_app, fake_backend):
    import threading
    fake_backend.drafting = True
    fake_backend.token_delay_s = 0.002
    app = make_app(parallel_slots=3, speculative_max_slots=1)
    with app.app_context():
        engine = services().engine
        for _ in range(3):
            fake_backend.enqueue("the cat sat on the mat and the dog lay on the rug")
        results = []
        gate = threading.Barrier(3)

        def one():
            gate.wait()
            results.append(collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=PASSAGE * 2))))
        threads = [threading.Thread(target=one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        model = fake_backend.loaded[0]
        prompt_length = len(PASSAGE * 2)
        for batch in model.batches:
            decoding = [e for e in batch if e.start_pos >= prompt_length]  # past the prompt: decode entries
            if len(decoding) > 1:
                assert not any(e.all_logits for e in decoding)
        assert len(results) == 3


def test_speculative_decoding_can_be_switched_off(make_app, fake_backend):
    fake_backend.drafting = True
    fake_backend.enqueue("the dog lay on the rug")
    app = make_app(parallel_slots=1, speculative_decoding=False)
    with app.app_context():
        result = collect("tiny", services().engine.submit(GenerateRequest(model="tiny", prompt=PASSAGE * 2)))
    assert result.usage.draft_tokens == 0
    assert not drafted_entries(fake_backend.loaded[0])


def test_drafts_never_run_past_max_tokens():
    controller = DraftController([1, 2, 3, 1, 2, 3, 1, 2], enabled=True)
    assert controller.propose(room=0) == []
    assert controller.propose(room=2) == [3, 1]


def test_the_index_proposes_what_followed_the_latest_occurrence_of_the_longest_match():
    index = NgramIndex([5, 6, 7, 8, 1, 6, 7, 9, 2, 6, 7])
    assert index.propose(3) == [9, 2, 6]  # "6 7" last seen before 9; the 3-gram "2 6 7" never was
    index.append(8)
    assert index.propose(2) == [1, 6]  # "6 7 8" was seen once, followed by 1


def test_a_fully_kept_draft_grows_and_a_miss_shrinks_it():
    controller = DraftController([], enabled=True)
    start = controller.length
    controller.judge(start, start)
    assert controller.length == min(MAX_DRAFT, start * 2)
    controller.judge(controller.length, 1)
    assert controller.length == 2
    assert controller.enabled


def test_greedy_and_seeded_requests_are_not_drafted_by_default(drafting):
    from ollama_server.engine.types import SamplingParams
    engine, fake = drafting
    for sampling in (SamplingParams(temperature=0.0), SamplingParams(seed=11)):
        fake.enqueue("the dog lay on the rug. the cat sat on the mat")
        result = collect("tiny", engine.submit(GenerateRequest(model="tiny", prompt=PASSAGE * 2, sampling=sampling)))
        assert result.usage.draft_tokens == 0


def test_greedy_requests_are_drafted_when_reproducible_greedy_is_off(make_app, fake_backend):
    from ollama_server.engine.types import SamplingParams
    fake_backend.drafting = True
    fake_backend.enqueue("the dog lay on the rug. the cat sat on the mat")
    app = make_app(parallel_slots=1, reproducible_greedy=False)
    with app.app_context():
        result = collect("tiny", services().engine.submit(
            GenerateRequest(model="tiny", prompt=PASSAGE * 2, sampling=SamplingParams(temperature=0.0))))
    assert result.text == "the dog lay on the rug. the cat sat on the mat"
    assert result.usage.accepted_draft_tokens > 0


def test_a_draft_length_is_chosen_for_what_it_is_expected_to_gain():
    from ollama_server.engine.drafting import StepCosts
    from ollama_server.engine.drafting import best_length
    costs = StepCosts()
    # Measured on the bundled model, 2 cores: odd row counts cost more than the next even one.
    for rows, seconds in ((1, 0.019), (2, 0.031), (3, 0.055), (4, 0.050), (5, 0.076), (6, 0.071), (7, 0.087),
                          (8, 0.082), (9, 0.110)):
        costs.add(rows, seconds)
    assert best_length(0.2, costs, 8) == 0   # poor acceptance: drafting loses
    assert best_length(0.7, costs, 8) == 1   # one draft token pays a little; three would not
    assert best_length(0.95, costs, 8) == 7  # eight rows cost less than seven: seven drafts, not eight
    assert best_length(0.95, costs, 4) == 3  # never past the adaptive length (four rows: three drafts)
    assert best_length(0.95, StepCosts(), 8) >= 4  # unmeasured: a guess (half a step per row) that drafts
