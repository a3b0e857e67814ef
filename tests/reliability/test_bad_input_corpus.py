"""The bad-input corpus against one real server (gunicorn, the bundled model): every malformed request is
answered below 500, in its route's dialect, before the guard timeout; the worker survives and still serves."""
from __future__ import annotations

import collections
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import requests

from ollama_server.api.errors.dialects import for_path
from tests.conftest import LiveServer
from tests.conftest import children_of
from tests.reliability import corpus
from tests.reliability import counts

pytestmark = pytest.mark.model
LIMIT = 2 * 1024 * 1024  # max_request_bytes: 10 MB is well over it, and a body just under it stays cheap
GUARD_S = 60  # only a failure guard: a request unanswered by then is counted as a hang
CLIENTS = 4  # the server's parallel_slots: concurrent, never queued into a busy refusal
SETTINGS = {"default_context_size": 512, "parallel_slots": CLIENTS, "max_queue": 16, "max_request_bytes": LIMIT,
            # any generation a mutated body leaves without its own limit stays short
            "default_max_tokens": 4, "log_level": "INFO"}


@dataclass
class Outcome:
    case: corpus.Case
    status: Optional[int] = None
    problem: str = ""  # why the answer is wrong; empty when it is right


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def judge(case: corpus.Case, response: requests.Response) -> str:
    """What is wrong with the answer to a malformed request, or ''."""
    status = response.status_code
    if status >= 500:
        return f"status {status}: {response.text[:300]}"
    if case.statuses and status not in case.statuses:
        return f"status {status}, expected one of {sorted(case.statuses)}: {response.text[:200]}"
    if status >= 400 and case.shape is not None:
        try:
            body = response.json()
        except ValueError:
            return f"status {status} with a body that is not JSON: {response.text[:200]!r}"
        if not case.shape(body, status):
            return f"status {status} not in the dialect's error shape: {response.text[:300]}"
    return ""


def send(url: str, case: corpus.Case) -> Outcome:
    """One case on a connection of its own (a kept-alive one may be closed by the server as it is reused)."""
    data = case.data() if callable(case.data) else case.data
    try:
        response = requests.request(case.method, url + case.path, data=data, headers=case.headers,
                                    timeout=GUARD_S)
    except requests.Timeout:
        return Outcome(case, problem="hang: no answer within the guard timeout")
    except requests.ConnectionError as exc:
        return Outcome(case, problem=f"connection error: {exc}")
    return Outcome(case, response.status_code, judge(case, response))


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("corpus"), SETTINGS) as server:
        # the gunicorn worker that serves (the master forks it; a crash or restart makes it a new pid)
        server.worker_pid = max(children_of(server.process.pid))
        yield server


@pytest.fixture(scope="module")
def outcomes(corpus_server) -> list[Outcome]:
    """Every case of the corpus sent once, CLIENTS at a time; the counts recorded whatever the result."""
    document = corpus_server.get_json("/openapi.json")
    assert document is not None, "the server does not serve /openapi.json"
    cases = corpus.build(document, LIMIT, lambda path: for_path(path).name)
    # Each route's valid body once first: the memory growth counted is the corpus's, not the first loads'
    # (the embedding context, the grammar checker).
    for route in corpus.ROUTES:
        warm = send(corpus_server.url, corpus.Case(f"{route.path}: valid", route.path, json.dumps(route.base).encode()))
        assert warm.status is not None and warm.status < 500, (route.path, warm.status, warm.problem)
    rss_before = rss_bytes(corpus_server.worker_pid)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda case: send(corpus_server.url, case), cases))
    statuses = collections.Counter(o.status // 100 for o in results if o.status is not None)
    counts.record("corpus", tried=len(results), status_2xx=statuses[2], status_4xx=statuses[4],
                  status_5xx=statuses[5], hangs=sum(o.problem.startswith("hang") for o in results),
                  errors=sum(bool(o.problem) for o in results),
                  rss_growth_mib=round((rss_bytes(corpus_server.worker_pid) - rss_before) / 2**20, 1))
    return results


def test_the_corpus_covers_at_least_200_malformed_requests_over_the_four_dialects(outcomes):
    assert len(outcomes) >= 200
    dialects = {route.dialect for route in corpus.ROUTES}
    assert {"openai", "anthropic", "vllm", "ollama", "tgi"} <= dialects
    routes = {o.case.path for o in outcomes}
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/responses", "/api/generate",
            "/tokenize", "/generate"} <= routes


def test_every_malformed_request_is_answered_below_500_in_its_routes_dialect_without_a_hang(outcomes):
    problems = [(o.case.label, o.problem) for o in outcomes if o.problem]
    assert problems == []


def test_ten_megabyte_bodies_are_refused_with_413(outcomes):
    big = [o for o in outcomes if "10 MB" in o.case.label]
    assert len(big) >= 4 and {o.status for o in big} == {413}


def test_the_served_document_names_the_dialect_the_corpus_expects_of_each_route(corpus_server):
    document = corpus_server.get_json("/openapi.json")
    for route in corpus.ROUTES:
        if route.label:  # TGI's body on vLLM's /tokenize: the route's documented dialect is vLLM's
            continue
        assert document["paths"][route.path]["post"]["tags"] == [route.dialect], route.path


def test_the_server_is_healthy_serves_a_completion_and_kept_its_worker_after_the_corpus(corpus_server, outcomes):
    assert requests.get(corpus_server.url + "/health", timeout=GUARD_S).status_code == 200
    response = requests.post(corpus_server.url + "/v1/chat/completions", timeout=GUARD_S, json={
        "model": corpus.MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["message"]["content"] and response.json()["usage"]["completion_tokens"] >= 1
    assert max(children_of(corpus_server.process.pid)) == corpus_server.worker_pid, "the worker was restarted"
    log = Path(corpus_server.log.name).read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
