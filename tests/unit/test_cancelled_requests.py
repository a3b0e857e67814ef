"""A dismissed request says so: 'abort' (vLLM) on the OpenAI routes, done_reason 'cancelled' for Ollama,
finish_reason 'cancelled' for TGI, streamed or not, and real clients parse it."""
from __future__ import annotations

import json
import threading
import time
from typing import Callable

import openai
import pytest
from huggingface_hub import InferenceClient
from werkzeug.serving import make_server

from ollama_server.services import EXTENSION_KEY

CHAT = [{"role": "user", "content": "hi"}]


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll a condition (the engine thread gives no event to wait on) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def openai_finishes(text: str) -> list:
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    return [choice["finish_reason"] for event in events if event != "[DONE]"
            for choice in json.loads(event).get("choices", []) if choice["finish_reason"] is not None]


def ollama_last(text: str) -> dict:
    return json.loads(text.strip().split("\n")[-1])


def tgi_last(text: str) -> dict:
    return json.loads([line for line in text.split("\n\n") if line.startswith("data:")][-1][len("data:"):])


# (route, body without stream, reads the final finish value of a streamed body, of a JSON body)
ROUTES = {
    "openai chat": ("/v1/chat/completions", {"model": "tiny", "messages": CHAT, "max_tokens": 100},
                    lambda text: openai_finishes(text), lambda body: [c["finish_reason"] for c in body["choices"]]),
    "openai completions": ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 100},
                           lambda text: openai_finishes(text),
                           lambda body: [c["finish_reason"] for c in body["choices"]]),
    "ollama generate": ("/api/generate", {"model": "tiny", "prompt": "hi"},
                        lambda text: ollama_last(text)["done_reason"], lambda body: body["done_reason"]),
    "ollama chat": ("/api/chat", {"model": "tiny", "messages": CHAT},
                    lambda text: ollama_last(text)["done_reason"], lambda body: body["done_reason"]),
    "tgi": ("/generate", {"inputs": "hi", "parameters": {"details": True, "max_new_tokens": 100}},
            lambda text: tgi_last(text)["details"]["finish_reason"],
            lambda body: body["details"]["finish_reason"]),
}
EXPECTED = {"openai chat": ["abort"], "openai completions": ["abort"], "ollama generate": "cancelled",
            "ollama chat": "cancelled", "tgi": "cancelled"}


def stream_request(name: str) -> tuple[str, dict]:
    path, body, _, _ = ROUTES[name]
    if name == "tgi":
        return "/generate_stream", body
    return path, {**body, "stream": True}


def plain_request(name: str) -> tuple[str, dict]:
    path, body, _, _ = ROUTES[name]
    return path, body if name == "tgi" else {**body, "stream": False}


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def submitted(app, monkeypatch) -> list:
    """Every Generation the engine accepts, in order (a non-streamed request shows its id only at the end)."""
    engine = app.extensions[EXTENSION_KEY].engine
    generations = []
    real_submit = engine.submit

    def spy(request, request_id=None):
        generation = real_submit(request, request_id=request_id)
        generations.append(generation)
        return generation
    monkeypatch.setattr(engine, "submit", spy)
    return generations


def dismiss(client, request_id: str) -> dict:
    response = client.post(f"/api/dismiss/{request_id}")
    assert response.status_code == 200
    return response.get_json()


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list, list]:
    """Start call in a thread; (thread, [its result], [its exception])."""
    results: list = []
    errors: list = []

    def target():
        try:
            results.append(call())
        except BaseException as exc:  # re-raised by joined(), in the test's thread
            errors.append(exc)
    worker = threading.Thread(target=target)
    worker.start()
    return worker, results, errors


def joined(worker: threading.Thread, results: list, errors: list):
    worker.join(timeout=30)
    assert not worker.is_alive()
    if errors:
        raise errors[0]
    return results[0]


def run_dismissed(app, fake_backend, submitted, call: Callable[[], object], reply: str = "abcdef"):
    """Run call (an HTTP request) in a thread, dismiss its request once it runs, and return what call returned.

    The fake back-end's gate holds the first decode step, so the dismissal lands mid-generation; the reply
    never ends on its own (it would ramble until max_tokens)."""
    fake_backend.enqueue(reply, end=False)
    fake_backend.gate.clear()
    worker = in_thread(call)
    try:
        wait_until(lambda: submitted and submitted[0].state == "running")
        assert dismiss(app.test_client(), submitted[0].id)["cancelled"] is True
    finally:
        fake_backend.gate.set()
    return joined(*worker)


def fetched(client, path: str, body: dict):
    """POST and read the whole body (the test client reads a stream's first chunk inside post())."""
    response = client.post(path, json=body)
    return response, response.get_data(as_text=True)


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_stream_dismissed_while_running_ends_with_the_dialects_cancelled_value(app, fake_backend, submitted,
                                                                                 name):
    """Dismissed mid-generation, the stream's final chunk says cancelled (abort for OpenAI)."""
    path, body = stream_request(name)
    response, text = run_dismissed(app, fake_backend, submitted, lambda: fetched(app.test_client(), path, body))
    assert response.status_code == 200 and response.headers["X-Request-Id"] == submitted[0].id
    assert ROUTES[name][2](text) == EXPECTED[name]
    assert submitted[0].state == "cancelled"


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_non_streamed_request_dismissed_while_running_reports_the_dialects_cancelled_value(app, fake_backend,
                                                                                          submitted, name):
    """Dismissed mid-generation, the JSON answer's finish reason says cancelled (abort for OpenAI)."""
    path, body = plain_request(name)
    response = run_dismissed(app, fake_backend, submitted, lambda: app.test_client().post(path, json=body))
    assert response.status_code == 200
    assert ROUTES[name][3](response.get_json()) == EXPECTED[name]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("name", list(ROUTES))
def test_a_request_dismissed_while_queued_ends_and_says_cancelled(app, fake_backend, submitted, name, stream):
    """A request dismissed before it got a slot still gets its dialect's cancelled ending, streamed or not."""
    fake_backend.enqueue("ab")  # the holder's reply; the dismissed request never reaches the model
    fake_backend.gate.clear()
    holder = in_thread(lambda: app.test_client().post("/api/generate", json={
        "model": "tiny", "prompt": "hold", "stream": False, "options": {"num_predict": 2}}))
    path, body = stream_request(name) if stream else plain_request(name)
    try:
        wait_until(lambda: submitted and submitted[0].state == "running")  # the only slot is taken
        queued = in_thread(lambda: fetched(app.test_client(), path, body))
        wait_until(lambda: len(submitted) == 2)
        request_id = submitted[1].id
        assert dismiss(app.test_client(), request_id) == {"request_id": request_id, "cancelled": True,
                                                          "state": "queued"}
    finally:
        fake_backend.gate.set()
    assert joined(*holder).status_code == 200
    response, text = joined(*queued)
    assert response.status_code == 200
    final = ROUTES[name][2](text) if stream else ROUTES[name][3](json.loads(text))
    assert final == EXPECTED[name]
    assert len(fake_backend.history) == 1  # only the holder was sampled


# --- real clients over a loopback HTTP server --------------------------------------------------------
@pytest.fixture
def served(app):
    """The app behind a real threaded HTTP server on 127.0.0.1, for clients that speak HTTP themselves."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_huggingface_hubs_client_parses_a_cancelled_non_streamed_answer(app, fake_backend, submitted, served):
    """InferenceClient does not check finish_reason against TGI's three values: 'cancelled' reaches the caller."""
    hf = InferenceClient(base_url=served, timeout=30)
    output = run_dismissed(app, fake_backend, submitted,
                           lambda: hf.text_generation("hi", max_new_tokens=100, details=True))
    assert output.details.finish_reason == "cancelled"
    assert output.generated_text == "a"


def test_huggingface_hubs_client_parses_a_cancelled_stream(app, fake_backend, submitted, served):
    """The streamed variant: the last event's details carry 'cancelled'."""
    hf = InferenceClient(base_url=served, timeout=30)
    events = run_dismissed(app, fake_backend, submitted,
                           lambda: list(hf.text_generation("hi", max_new_tokens=100, details=True, stream=True)))
    assert events[-1].details.finish_reason == "cancelled"
    assert events[-1].generated_text == "a"


def test_the_openai_sdk_parses_abort(app, fake_backend, submitted, served):
    """The SDK builds its models without validation, so vLLM's 'abort' reaches the caller."""
    client = openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0, timeout=30)
    completion = run_dismissed(app, fake_backend, submitted, lambda: client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=100))
    assert completion.choices[0].finish_reason == "abort"
