"""Engine.score on the real Gemma 3 270M: a likely continuation scores better, the values are llama.cpp's own
logits (brute force over every row), and a second call gives exactly the same numbers."""
from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from ollama_server import create_app
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.models.default_model import ensure_default_model
from ollama_server.services import EXTENSION_KEY
from ollama_server.settings import build_settings

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
CAPITAL = GenerateRequest(model=MODEL, prompt="The capital of France is")
BATCH = 64  # small, so that a long prompt is read over several decodes


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return ensure_default_model(tmp_path_factory.mktemp("score_data"))


@pytest.fixture(scope="module")
def engine(model_path):
    data_dir = model_path.parent.parent
    settings = build_settings({"data_dir": str(data_dir), "default_context_size": 1024, "parallel_slots": 1,
                               "batch_size": BATCH, "threads": 2})
    app = create_app({"TESTING": True, "SETTINGS": settings})
    made = app.extensions[EXTENSION_KEY]
    yield made.engine
    made.close()


@pytest.fixture(scope="module")
def reference(model_path):
    """llama.cpp's high-level model keeping the logits of every position: the brute-force reference."""
    # Flash attention as the engine's contexts get it (llama.cpp's "auto" turns it on here): without it the
    # kernels differ enough to move this model's NLL by ~0.08, which is no measure of the scorer.
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=1024, n_batch=512, logits_all=True, n_threads=2,
                          flash_attn=True, verbose=False)
    yield llm
    llm.close()


def brute_force_mean_nll(llm, prompt: list[int], continuation: list[int]) -> float:
    """Mean -log p of the continuation from the logits of all rows of one evaluation, log-softmax in float64."""
    tokens = prompt + continuation
    llm.reset()
    llm.eval(tokens)
    total = 0.0
    for position in range(len(prompt), len(tokens)):
        row = np.asarray(llm.scores[position - 1], dtype=np.float64)  # one row at a time: 2 MiB, not 1 GiB
        peak = row.max()
        total -= row[tokens[position]] - (peak + np.log(np.exp(row - peak).sum()))
    return total / len(continuation)


def tokens_of(engine, request: GenerateRequest, continuation: str) -> tuple[list[int], list[int]]:
    name, prompt = engine.prompt_tokens(request)
    return prompt, engine.tokenize(name, continuation, add_special=False)[1]


def test_the_likely_continuation_has_the_lower_mean_nll(engine):
    likely = engine.score(CAPITAL, " Paris")
    unlikely = engine.score(CAPITAL, " a banana")
    assert likely.mean_nll < unlikely.mean_nll
    assert likely.tokens == 1 and likely.logprobs[0] > -3.0  # Gemma knows this one


def test_the_score_equals_a_brute_force_computation_from_llama_cpp_logits(engine, reference):
    result = engine.score(CAPITAL, " Paris")
    prompt, continuation = tokens_of(engine, CAPITAL, " Paris")
    assert result.prompt_tokens == len(prompt) and result.tokens == len(continuation)
    assert result.mean_nll == pytest.approx(brute_force_mean_nll(reference, prompt, continuation), abs=1e-3)


def test_a_long_prompt_and_continuation_read_over_several_decodes_match_the_brute_force(engine, reference):
    passage = ("The lighthouse on the northern cape was built in 1871 from granite quarried two miles inland. "
               "Its keeper, a retired sailor, kept a log of every ship that passed and the weather at dawn. ")
    request = GenerateRequest(model=MODEL, messages=(Message("user", "Repeat this passage:\n\n" + passage * 3),))
    answer = passage * 3  # well beyond 32 scored rows and the 64-token batch
    result = engine.score(request, answer)
    prompt, continuation = tokens_of(engine, request, answer)
    assert len(prompt) > 2 * BATCH and len(continuation) > 2 * BATCH
    assert result.tokens == len(continuation)
    assert result.mean_nll == pytest.approx(brute_force_mean_nll(reference, prompt, continuation), abs=1e-3)
    assert result.nll == pytest.approx(-sum(result.logprobs))


def test_two_calls_agree_exactly(engine):
    first = engine.score(CAPITAL, " Paris, the city of light")
    engine.score(GenerateRequest(model=MODEL, prompt="Something else entirely"), " to fill the cache")
    second = engine.score(CAPITAL, " Paris, the city of light")
    assert first.logprobs == second.logprobs and first.nll == second.nll


def test_a_sequence_longer_than_the_first_scoring_context_grows_it_and_still_matches(engine, reference):
    engine.score(CAPITAL, " Paris")  # the scoring context exists, at its smallest (512 tokens)
    story = " ".join(f"On day {day} the keeper logged {day * 3} ships and wrote that the sea was calm." for day in
                     range(1, 28))
    request = GenerateRequest(model=MODEL, prompt="The keeper's log, copied out in full:\n")
    result = engine.score(request, story)
    prompt, continuation = tokens_of(engine, request, story)
    assert len(prompt) + len(continuation) > 512
    assert result.mean_nll == pytest.approx(brute_force_mean_nll(reference, prompt, continuation), abs=1e-3)
