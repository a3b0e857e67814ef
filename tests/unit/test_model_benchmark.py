"""The per-model benchmark through the engine's public submit() on the scripted fake back-end: the fixed
greedy request, timings from Usage, one run per model at a time, stored results, and the JSON routes."""
from __future__ import annotations

import pytest

from ollama_server.engine.types import ModelNotFoundError
from ollama_server.engine.types import Usage
from ollama_server.model_benchmark import MAX_TOKENS
from ollama_server.model_benchmark import PROMPT
from ollama_server.model_benchmark import BenchmarkBusy
from ollama_server.model_benchmark import ModelBenchmarks
from ollama_server.model_benchmark import timings
from ollama_server.services import EXTENSION_KEY

MODEL = "tiny:latest"  # what the placeholder tiny.gguf is called


@pytest.fixture
def app(make_app):
    return make_app(default_context_size=2048)  # the fake back-end's tokens are characters: room for the prompt


def benchmarks_of(app) -> ModelBenchmarks:
    return app.extensions[EXTENSION_KEY].benchmarks


def test_the_prompt_is_plain_english_of_about_128_tokens():
    words = PROMPT.split()
    assert 90 <= len(words) <= 130 and PROMPT.isascii()  # ~1.3 tokens per English word


def test_timings_follow_the_usage_fields():
    usage = Usage(prompt_tokens=128, completion_tokens=64, queue_s=0.5, prompt_eval_s=0.25, eval_s=2.1, total_s=2.85)
    assert timings(usage) == {"prompt_tokens": 128, "completion_tokens": 64, "prompt_tokens_per_second": 512.0,
                              "decode_tokens_per_second": pytest.approx(30.0), "ttft_s": 0.75, "duration_s": 2.85}


def test_timings_without_enough_tokens_have_no_rates():
    usage = Usage(prompt_tokens=10, completion_tokens=1, prompt_eval_s=0.0, eval_s=0.0, total_s=0.1)
    result = timings(usage)
    assert result["prompt_tokens_per_second"] is None and result["decode_tokens_per_second"] is None


def test_a_benchmark_runs_the_fixed_greedy_request_and_stores_its_result(app, fake_backend):
    benchmarks = benchmarks_of(app)
    job = benchmarks.start("tiny")
    assert job["status"] == "running" and job["id"] and job["model"] == MODEL
    assert benchmarks.wait(MODEL, timeout=60)
    _, prompt, sampling = fake_backend.history[-1]
    assert "".join(map(chr, prompt)) == PROMPT and sampling.temperature == 0.0
    result = benchmarks.latest(MODEL)
    assert result["status"] == "ok" and result["error"] is None and result["model"] == MODEL
    assert result["prompt_tokens"] == len(PROMPT) and result["completion_tokens"] == MAX_TOKENS
    assert result["prompt_tokens_per_second"] > 0 and result["decode_tokens_per_second"] > 0
    assert 0 < result["ttft_s"] <= result["duration_s"] and result["date"]
    settings = app.extensions[EXTENSION_KEY].settings
    assert result["settings"] == {"gpu_layers": -1, "tensor_split": [], "context": 2048, "batch": 512,
                                  "threads": settings.effective_threads, "slots": 1}


def test_one_benchmark_per_model_at_a_time(app, fake_backend):
    benchmarks = benchmarks_of(app)
    fake_backend.gate.clear()  # hold the generation at its first decode
    try:
        benchmarks.start("tiny")
        assert benchmarks.running() == [MODEL]
        with pytest.raises(BenchmarkBusy):
            benchmarks.start("tiny")
    finally:
        fake_backend.gate.set()
    assert benchmarks.wait(MODEL, timeout=60) and benchmarks.running() == []
    benchmarks.start("tiny")  # done: it may run again
    assert benchmarks.wait(MODEL, timeout=60)
    assert [r["status"] for r in benchmarks.history(MODEL)] == ["ok", "ok"]


def test_an_unknown_model_is_refused_before_anything_runs(app):
    with pytest.raises(ModelNotFoundError):
        benchmarks_of(app).start("no-such-model")
    assert benchmarks_of(app).running() == []


def test_a_failed_run_is_stored_with_its_reason(make_app):
    app = make_app()  # a 256-token context: the fixed prompt does not fit
    benchmarks = benchmarks_of(app)
    benchmarks.start("tiny")
    assert benchmarks.wait(MODEL, timeout=60)
    result = benchmarks.latest(MODEL)
    assert result["status"] == "error" and "context length" in result["error"]
    assert result["prompt_tokens_per_second"] is None


def test_the_routes_start_a_run_and_list_the_results_newest_first(app):
    client = app.test_client()
    response = client.post("/api/dashboard/models/tiny/benchmark")
    assert response.status_code == 202 and response.get_json()["status"] == "running"
    assert benchmarks_of(app).wait(MODEL, timeout=60)
    client.post("/api/dashboard/models/tiny/benchmark")
    assert benchmarks_of(app).wait(MODEL, timeout=60)
    body = client.get("/api/dashboard/models/tiny/benchmarks").get_json()
    assert body["model"] == MODEL and body["running"] is False and len(body["benchmarks"]) == 2
    assert body["latest"] == body["benchmarks"][0] and body["benchmarks"][0]["id"] > body["benchmarks"][1]["id"]
    assert len(client.get("/api/dashboard/models/tiny/benchmarks?limit=1").get_json()["benchmarks"]) == 1


def test_the_routes_answer_404_for_an_unknown_model_and_400_for_a_bad_limit(app):
    client = app.test_client()
    assert client.post("/api/dashboard/models/nope/benchmark").status_code == 404
    assert client.get("/api/dashboard/models/nope/benchmarks").status_code == 404
    response = client.get("/api/dashboard/models/tiny/benchmarks?limit=zero")
    assert response.status_code == 400 and "limit" in response.get_json()["error"]


def test_the_route_answers_409_while_the_model_is_being_benchmarked(app, fake_backend):
    client = app.test_client()
    fake_backend.gate.clear()
    try:
        assert client.post("/api/dashboard/models/tiny/benchmark").status_code == 202
        response = client.post("/api/dashboard/models/tiny/benchmark")
        assert response.status_code == 409 and "already running" in response.get_json()["error"]
        assert client.get("/api/dashboard/models/tiny/benchmarks").get_json()["running"] is True
    finally:
        fake_backend.gate.set()
    assert benchmarks_of(app).wait(MODEL, timeout=60)
