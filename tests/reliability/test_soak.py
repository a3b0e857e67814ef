"""Soak: 16 concurrent clients of the four dialects (through their own client libraries) on one real server,
a fixed number of requests each: not one error, no 5xx in the access log, bounded growth of the worker's RSS."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Callable

import ollama
import openai
import pytest
import requests
from huggingface_hub import InferenceClient

from tests.conftest import LiveServer
from tests.reliability import counts
from tests.reliability.conftest import access_statuses
from tests.reliability.conftest import log_size
from tests.reliability.conftest import rss_mib
from tests.reliability.conftest import worker_pid

pytestmark = pytest.mark.model

CLIENTS = 16
ROUNDS = 5  # requests per client after its warm-up one (6 each, 96 in all): bounded by count, never by time
MAX_TOKENS = 6
# The bound on RSS growth over the measured rounds. After the warm-up round every code path, thread and KV
# buffer the run needs already exists; what may still grow is allocator fragmentation and caches (Jinja,
# tokenizer, request book of 256 finished requests). 64 MiB is a quarter of the model's own 240 MiB: a leak
# per request (80 measured) of even ~0.8 MiB, a KV buffer or a retained stream, would cross it.
RSS_GROWTH_LIMIT_MIB = 64.0
GUARD_S = 600.0  # only so a hung client fails the test instead of hanging it; never reached when healthy


@dataclass
class Tally:
    """What the clients saw, merged under one lock."""

    requests: int = 0
    errors: list[str] = field(default_factory=list)
    status_5xx: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, error: str | None = None, status: int | None = None) -> None:
        with self.lock:
            self.requests += 1
            if error is not None:
                self.errors.append(error)
            if status is not None and status >= 500:
                self.status_5xx += 1


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a client library's exception carries, if any."""
    value = getattr(exc, "status_code", None)  # openai.APIStatusError, ollama.ResponseError
    if isinstance(value, int):
        return value
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def the_model(server: LiveServer) -> str:
    return requests.get(server.url + "/v1/models", timeout=30).json()["data"][0]["id"]


class Clients:
    """One callable per dialect flavour; each makes one request, reads it to its end and checks its shape."""

    def __init__(self, server: LiveServer, model: str):
        self.url, self.model = server.url, model
        self.openai = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        self.ollama = ollama.Client(host=server.url, timeout=120)
        self.tgi = InferenceClient(base_url=server.url, timeout=120)
        self.http = requests.Session()

    def flavours(self) -> list[Callable[[str], None]]:
        return [self.openai_chat_stream, self.openai_chat, self.ollama_chat_stream, self.ollama_generate,
                self.tgi_stream, self.tgi_generate, self.vllm_completions_stream, self.vllm_completions]

    def openai_chat_stream(self, prompt: str) -> None:
        stream = self.openai.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS,
            temperature=0.7, seed=7, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)  # read to its end: the iterator holds the connection until then
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes in (["length"], ["stop"]), finishes
        assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= MAX_TOKENS

    def openai_chat(self, prompt: str) -> None:
        reply = self.openai.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0)
        assert reply.choices[0].finish_reason in ("length", "stop")
        assert 0 < reply.usage.completion_tokens <= MAX_TOKENS

    def ollama_chat_stream(self, prompt: str) -> None:
        parts = list(self.ollama.chat(model=self.model, messages=[{"role": "user", "content": prompt}],
                                      options={"num_predict": MAX_TOKENS, "temperature": 0}, stream=True))
        assert parts[-1].done and not any(p.done for p in parts[:-1])
        assert 0 < parts[-1].eval_count <= MAX_TOKENS

    def ollama_generate(self, prompt: str) -> None:
        reply = self.ollama.generate(model=self.model, prompt=prompt,
                                     options={"num_predict": MAX_TOKENS, "temperature": 0})
        assert reply.done and reply.done_reason in ("length", "stop") and 0 < reply.eval_count <= MAX_TOKENS

    def tgi_stream(self, prompt: str) -> None:
        events = list(self.tgi.text_generation(prompt, max_new_tokens=MAX_TOKENS, stream=True, details=True))
        assert events[-1].details is not None and events[-1].details.generated_tokens == len(events)

    def tgi_generate(self, prompt: str) -> None:
        output = self.tgi.text_generation(prompt, max_new_tokens=MAX_TOKENS, details=True)
        assert 0 < output.details.generated_tokens <= MAX_TOKENS

    def vllm_completions_stream(self, prompt: str) -> None:
        stream = self.openai.completions.create(
            model=self.model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0.8, seed=3, stream=True,
            extra_body={"ignore_eos": True, "min_tokens": MAX_TOKENS, "top_k": 20, "repetition_penalty": 1.1})
        chunks = list(stream)
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]

    def vllm_completions(self, prompt: str) -> None:
        response = self.http.post(self.url + "/v1/completions", timeout=120, json={
            "model": self.model, "prompt": prompt, "max_tokens": MAX_TOKENS, "ignore_eos": True, "min_p": 0.05,
            "min_tokens": 2, "top_k": 40, "temperature": 0.5, "seed": 11})
        assert response.status_code == 200, f"{response.status_code} {response.text[:200]}"
        assert response.json()["usage"]["completion_tokens"] == MAX_TOKENS


def run_phase(clients: Clients, rounds: int, first_round: int, tally: Tally) -> None:
    """Every client thread makes `rounds` requests of its own flavour, all 16 at once; join them all."""
    flavours = clients.flavours()

    def client(index: int) -> None:
        call = flavours[index % len(flavours)]
        for number in range(first_round, first_round + rounds):
            try:
                call(f"Client {index}, message {number}: name a colour and a fruit.")
            except Exception as exc:  # every failure is counted and reported, none stops the others
                tally.add(f"client {index} ({call.__name__}) round {number}: {type(exc).__name__}: {exc}",
                          status_of(exc))
            else:
                tally.add()
    threads = [threading.Thread(target=client, args=(i,), name=f"soak-{i}") for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD_S)
    assert not any(thread.is_alive() for thread in threads), "a soak client hung"


def test_sixteen_clients_of_four_dialects_get_no_error_and_the_worker_memory_stays_bounded(soak_server):
    clients = Clients(soak_server, the_model(soak_server))
    pid = worker_pid(soak_server)
    mark = log_size(soak_server)  # the readiness polls before it may have seen 503 "loading"
    warm = Tally()
    run_phase(clients, 1, 0, warm)  # every flavour once, 16 at once: threads, KV slots, caches exist now
    assert warm.errors == [], warm.errors
    rss_start = rss_mib(pid)

    tally = Tally()
    run_phase(clients, ROUNDS, 1, tally)
    rss_end = rss_mib(pid)
    statuses = access_statuses(soak_server, mark)
    server_errors = [(path, status) for path, status in statuses if status >= 500 or status == 429]
    growth = rss_end - rss_start
    counts.record("soak", clients=CLIENTS, requests=warm.requests + tally.requests,
                  errors=len(warm.errors) + len(tally.errors), status_5xx=tally.status_5xx + warm.status_5xx,
                  server_5xx_or_busy=len(server_errors), rss_start_mb=round(rss_start, 1),
                  rss_end_mb=round(rss_end, 1), rss_growth_mb=round(growth, 1))

    assert tally.requests == CLIENTS * ROUNDS
    assert tally.errors == [], tally.errors[:5]
    assert server_errors == [], server_errors[:5]
    assert len(statuses) >= CLIENTS * (ROUNDS + 1) and {status for path, status in statuses} == {200}
    assert growth < RSS_GROWTH_LIMIT_MIB, f"the worker's RSS grew {growth:.1f} MiB over {tally.requests} requests"
