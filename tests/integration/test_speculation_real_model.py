"""Speculative decoding and shared prefixes on the real model: greedy output is token for token the output
without drafts, and a copied prefix continues exactly like a prefix evaluated in place."""
from __future__ import annotations

import time

import pytest

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.generation import Generation
from ollama_server.engine.llama_backend import LlamaBackend
from ollama_server.engine.runner import ModelRunner
from ollama_server.engine.drafting import Speculation
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import collect
from ollama_server.models.default_model import ensure_default_model

PASSAGE = ("The lighthouse on the northern cape was built in 1871 from granite quarried two miles inland. "
           "Its keeper, a retired sailor named Tomas Reyes, kept a log of every ship that passed, the weather "
           "at dawn and dusk, and the number of gulls nesting on the gallery. In the winter of 1903 a storm "
           "broke the lamp room windows, and Reyes kept the light burning with a hand-held lantern for three "
           "nights until the supply boat arrived. ")
GREEDY = SamplingParams(temperature=0.0)
# Sampled but deterministic (top_k 1) and unseeded: allowed to copy prefixes, comparable token for token.
ARGMAX_SAMPLED = SamplingParams(temperature=0.7, top_k=1)


def turn(text: str) -> str:
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


@pytest.fixture(scope="module")
def backend():
    backend = LlamaBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(ensure_default_model(tmp_path_factory.mktemp("spec_model")))


@pytest.fixture(scope="module")
def runners(backend, model_path):
    """The same model twice: one runner drafting by prompt lookup (the default: sampled requests only), one
    never drafting."""
    options = LoadOptions(n_ctx=2048, n_slots=2, n_batch=512, n_threads=2)
    drafting = ModelRunner("drafting", backend.load(model_path, options), 4, speculation=Speculation(max_slots=2))
    plain = ModelRunner("plain", backend.load(model_path, options), 4, speculation=Speculation(enabled=False))
    yield drafting, plain
    drafting.stop()
    plain.stop()


def start(runner: ModelRunner, prompt, sampling=GREEDY, max_tokens: int = 96) -> Generation:
    tokens = runner.model.tokenize(prompt, add_special=True) if isinstance(prompt, str) else list(prompt)
    request = GenerateRequest(model=runner.name, prompt_tokens=tuple(tokens), sampling=sampling,
                              max_tokens=max_tokens)
    generation = Generation(request, runner.name, tokens, max_tokens, deadline=time.monotonic() + 600)
    runner.enqueue(generation)
    return generation


def run(runner: ModelRunner, prompt, sampling=GREEDY, max_tokens: int = 96):
    return collect(runner.name, start(runner, prompt, sampling, max_tokens))


GROUNDED = turn("Repeat the following passage word for word:\n\n" + PASSAGE)


def test_greedy_requests_keep_their_reproducible_output_by_default(runners):
    drafting, plain = runners
    with_drafting_on = run(drafting, GROUNDED)
    without = run(plain, GROUNDED)
    assert with_drafting_on.usage.draft_tokens == 0
    assert with_drafting_on.token_ids == without.token_ids


def test_sampled_requests_on_an_input_grounded_prompt_are_drafted_and_mostly_kept(runners):
    drafting, _ = runners
    result = run(drafting, GROUNDED, ARGMAX_SAMPLED)
    assert result.usage.draft_tokens > 0
    assert result.usage.accepted_draft_tokens > result.usage.draft_tokens / 2
    assert "lighthouse" in result.text


def test_a_copied_prefix_holds_the_same_cells_as_the_source(backend, model_path):
    """Copy a sequence, cut it at the prefix, and decode the same token on both: bit-identical logits."""
    from ollama_server.engine.backend import DecodeEntry
    model = backend.load(model_path, LoadOptions(n_ctx=2048, n_slots=2, n_batch=512, n_threads=2))
    try:
        tokens = model.tokenize(turn("Who kept the log? " + PASSAGE * 2), add_special=True)
        prefix, extra = tokens[:-12], tokens[-12:]
        for chunk in range(0, len(tokens), 256):  # the source holds more than the prefix
            model.decode([DecodeEntry(0, tokens[chunk:chunk + 256], chunk, True)])
        assert model.can_continue(0, len(prefix))
        model.copy_sequence(0, 1)
        assert model.forget(1, len(prefix)) and model.forget(0, len(prefix))
        rows = [model.decode([DecodeEntry(seq, extra[:1], len(prefix), True)])[0] for seq in (0, 1)]
        assert rows == [0, 0]
        first = model._logits(0).copy()
        model.forget(0, len(prefix))
        model.decode([DecodeEntry(0, extra[:1], len(prefix), True)])
        again_source = model._logits(0).copy()
        model.forget(1, len(prefix))
        model.decode([DecodeEntry(1, extra[:1], len(prefix), True)])
        copied = model._logits(0).copy()
        assert (again_source == first).all()
        assert (copied == again_source).all()
    finally:
        model.close()


def test_requests_sharing_a_system_prompt_copy_it_and_report_it_cached(runners):
    drafting, _ = runners
    system = "You answer questions about this text.\n\n" + PASSAGE * 2
    prompts = [turn(system + "\n\nWho kept the log?"), turn(system + "\n\nWhen was it built?")]
    copies_before = drafting.shared_prefix_tokens
    # Queued microseconds apart: the second is admitted while the first still reads or decodes.
    generations = [start(drafting, prompt, ARGMAX_SAMPLED, max_tokens=24) for prompt in prompts]
    results = [collect(drafting.name, generation) for generation in generations]
    assert drafting.shared_prefix_tokens > copies_before
    copied = max(results, key=lambda r: r.usage.cached_tokens)
    assert copied.usage.cached_tokens >= len(drafting.model.tokenize(turn(system), add_special=True)) - 8
    assert all(r.finish_reason in ("stop", "length") and r.usage.completion_tokens > 0 for r in results)


def test_a_draft_model_proposes_tokens_that_are_kept(backend, model_path):
    options = LoadOptions(n_ctx=2048, n_slots=1, n_batch=512, n_threads=2)
    drafter = backend.load_draft(model_path, options)  # the model drafting for itself: its drafts are its argmax
    runner = ModelRunner("draft", backend.load(model_path, options), 4,
                         speculation=Speculation(max_slots=1, drafter=drafter))
    try:
        result = run(runner, turn("Tell me a short story about a lighthouse keeper."), ARGMAX_SAMPLED, 48)
        assert result.usage.draft_tokens > 0
        assert result.usage.accepted_draft_tokens >= result.usage.draft_tokens * 0.8
    finally:
        runner.stop()
