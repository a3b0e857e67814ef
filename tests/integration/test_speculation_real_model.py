"""Speculative decoding and shared prefixes on the real model: greedy output is token for token the output
without drafts, and a copied prefix continues exactly like a prefix evaluated in place."""
from __future__ import annotations

import time

import pytest

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.generation import Generation
from ollama_server.engine.llama_backend import LlamaBackend
from ollama_server.engine.runner import ModelRunner
from ollama_server.engine.runner import Speculation
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
    """The same model twice: one runner drafting by prompt lookup, one never drafting."""
    options = LoadOptions(n_ctx=2048, n_slots=2, n_batch=512, n_threads=2)
    drafting = ModelRunner("drafting", backend.load(model_path, options), 4, speculation=Speculation(max_slots=2))
    plain = ModelRunner("plain", backend.load(model_path, options), 4, speculation=Speculation(enabled=False))
    yield drafting, plain
    drafting.stop()
    plain.stop()


def start(runner: ModelRunner, prompt: str, sampling=GREEDY, max_tokens: int = 96) -> Generation:
    request = GenerateRequest(model=runner.name, prompt=prompt, sampling=sampling, max_tokens=max_tokens)
    tokens = runner.model.tokenize(prompt, add_special=True)
    generation = Generation(request, runner.name, tokens, max_tokens, deadline=time.monotonic() + 600)
    runner.enqueue(generation)
    return generation


def run(runner: ModelRunner, prompt: str, sampling=GREEDY, max_tokens: int = 96):
    return collect(runner.name, start(runner, prompt, sampling, max_tokens))


@pytest.mark.parametrize("instruction", [
    "Repeat the following passage word for word:\n\n",
    "Rewrite the following passage, keeping every name and number:\n\n",
])
def test_greedy_output_is_identical_with_and_without_drafts(runners, instruction):
    drafting, plain = runners
    prompt = turn(instruction + PASSAGE)
    with_drafts = run(drafting, prompt)
    without = run(plain, prompt)
    assert with_drafts.token_ids == without.token_ids
    assert with_drafts.text == without.text
    assert without.usage.draft_tokens == 0


def test_drafts_are_proposed_and_kept_on_an_input_grounded_prompt(runners):
    drafting, _ = runners
    result = run(drafting, turn("Repeat the following passage word for word:\n\n" + PASSAGE))
    assert result.usage.draft_tokens > 0
    assert result.usage.accepted_draft_tokens > 0


def test_a_request_that_copies_a_shared_prefix_continues_as_a_fresh_evaluation_does(runners):
    drafting, plain = runners
    system = "You answer questions about this text.\n\n" + PASSAGE * 2
    prompts = [turn(system + "\n\nWho kept the log?"), turn(system + "\n\nWhen was it built?")]
    copies_before = drafting.shared_prefix_tokens
    # Queued microseconds apart: the second is admitted while the first still reads or decodes.
    generations = [start(drafting, prompt, ARGMAX_SAMPLED, max_tokens=24) for prompt in prompts]
    results = [collect(drafting.name, generation) for generation in generations]
    assert drafting.shared_prefix_tokens > copies_before
    copied = max(results, key=lambda r: r.usage.cached_tokens)
    assert copied.usage.cached_tokens >= len(drafting.model.tokenize(turn(system), add_special=True)) - 8
    fresh = run(plain, prompts[results.index(copied)], GREEDY, max_tokens=24)
    assert copied.token_ids == fresh.token_ids


def test_a_draft_model_proposes_and_greedy_output_stays_identical(backend, model_path, runners):
    _, plain = runners
    options = LoadOptions(n_ctx=2048, n_slots=1, n_batch=512, n_threads=2)
    drafter = backend.load_draft(model_path, options)  # the model drafting for itself: its drafts are its argmax
    runner = ModelRunner("draft", backend.load(model_path, options), 4,
                         speculation=Speculation(max_slots=1, drafter=drafter))
    try:
        prompt = turn("Tell me a short story about a lighthouse keeper.")
        with_draft_model = run(runner, prompt, max_tokens=48)
        without = run(plain, prompt, max_tokens=48)
        assert with_draft_model.token_ids == without.token_ids
        assert with_draft_model.usage.draft_tokens > 0
        assert with_draft_model.usage.accepted_draft_tokens >= with_draft_model.usage.draft_tokens * 0.8
    finally:
        runner.stop()
