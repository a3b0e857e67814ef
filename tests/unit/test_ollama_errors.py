"""Ollama errors on the scripted back-end: every bad request answered as {"error"} with Ollama's status."""
from __future__ import annotations

import threading
import time

import pytest

from tests.unit.ollama_support import engine_of
from tests.unit.ollama_support import ndjson
from tests.unit.ollama_support import post_raw


# --- discovery -------------------------------------------------------------------------------------


BAD_REQUESTS = [
    ("missing body", "/api/generate", b"", 400),
    ("whitespace body", "/api/chat", b"  ", 400),
    ("malformed json", "/api/generate", b'{"model": "tiny", "prompt": ', 400),
    ("body is a list", "/api/generate", b"[1, 2]", 400),
    ("prompt is a number", "/api/generate", {"model": "tiny", "prompt": 5}, 400),
    ("prompt is a list", "/api/generate", {"model": "tiny", "prompt": ["a"]}, 400),
    ("stream is a string", "/api/generate", {"model": "tiny", "prompt": "x", "stream": "yes"}, 400),
    ("options not an object", "/api/generate", {"model": "tiny", "prompt": "x", "options": [1]}, 400),
    ("temperature is a string", "/api/generate", {"model": "tiny", "prompt": "x",
                                                  "options": {"temperature": "hot"}}, 400),
    ("num_predict is a string", "/api/generate", {"model": "tiny", "prompt": "x",
                                                  "options": {"num_predict": "16"}}, 400),
    ("stop is a string", "/api/generate", {"model": "tiny", "prompt": "x", "options": {"stop": "x"}}, 400),
    ("raw with system", "/api/generate", {"model": "tiny", "prompt": "x", "raw": True, "system": "s"}, 400),
    ("unknown model", "/api/generate", {"model": "no-such-model", "prompt": "x"}, 404),
    ("unknown model in chat", "/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404),
    ("format xml", "/api/generate", {"model": "tiny", "prompt": "x", "format": "xml"}, 400),
    ("keep_alive forever", "/api/generate", {"model": "tiny", "prompt": "x", "keep_alive": "forever"}, 400),
    ("think level unknown", "/api/generate", {"model": "tiny", "prompt": "x", "think": "extreme"}, 400),
    ("top_logprobs too high", "/api/generate", {"model": "tiny", "prompt": "x", "logprobs": True,
                                                "top_logprobs": 21}, 400),
    ("suffix", "/api/generate", {"model": "tiny", "prompt": "x", "suffix": "y"}, 400),
    ("prompt too long", "/api/generate", {"model": "tiny", "prompt": "x" * 300}, 400),
    ("messages not a list", "/api/chat", {"model": "tiny", "messages": "hi"}, 400),
    ("message without role", "/api/chat", {"model": "tiny", "messages": [{"content": "hi"}]}, 400),
    ("unknown role", "/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400),
    ("tool without a name", "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                          "tools": [{"type": "function", "function": {}}]}, 400),
    ("tool not a function", "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                          "tools": [{"type": "web_search"}]}, 400),
    ("images", "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
     400),
]


@pytest.mark.parametrize("name,path,payload,status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_ollama_errors(client, name, path, payload, status):
    response = post_raw(client, path, payload)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]


def test_error_messages_use_ollamas_wording(client):
    assert post_raw(client, "/api/generate", b"").get_json() == {"error": "missing request body"}
    assert client.post("/api/generate", json={"model": "x1", "prompt": "x"}).get_json() == {
        "error": "model 'x1' not found"}
    assert client.post("/api/generate", json={"model": "tiny", "prompt": "x", "raw": True, "system": "s"}
                       ).get_json() == {"error": "raw mode does not support template, system, or context"}


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(max_request_bytes=2048).test_client()
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x" * 5000})
    assert response.status_code == 413
    assert list(response.get_json()) == ["error"]


def test_wrong_method_is_405_in_ollamas_shape(client):
    response = client.get("/api/generate")
    assert response.status_code == 405 and list(response.get_json()) == ["error"]


def test_it_returns_503_when_queue_full(make_app, fake_backend):
    client = make_app(max_queue=0).test_client()
    fake_backend.gate.clear()
    holder = threading.Thread(target=lambda: client.post("/api/generate", json={
        "model": "tiny", "prompt": "a", "stream": False, "options": {"num_predict": 3}}))
    holder.start()
    try:
        for _ in range(100):
            if engine_of(client).snapshot().running:
                break
            time.sleep(0.02)
        response = client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "b"}]})
        assert response.status_code == 503
        assert response.get_json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    finally:
        fake_backend.gate.set()
        holder.join()


def test_an_error_mid_stream_is_the_last_ndjson_line(make_app, fake_backend):
    client = make_app(request_timeout=0.3).test_client()
    fake_backend.gate.clear()
    try:
        response = client.post("/api/generate", json={"model": "tiny", "prompt": "x"})
        assert response.status_code == 200
        lines = ndjson(response)
        assert lines[-1] == {"error": "request timed out"}
    finally:
        fake_backend.gate.set()


@pytest.mark.parametrize("path,body", [
    ("/api/generate", {"model": "tiny", "prompt": "x", "stream": False}),
    ("/api/generate", {"model": "tiny", "prompt": "x"}),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": False}),
])
@pytest.mark.parametrize("num_predict", [-3, -5, -1000])
def test_it_returns_400_naming_num_predict_for_a_negative_other_than_minus_one_or_two(client, fake_backend, path,
                                                                                       body, num_predict):
    """num_predict -5 is refused up front instead of running to the end of the context."""
    fake_backend.enqueue("x" * 50, end=False)
    response = client.post(path, json={**body, "options": {"num_predict": num_predict}})
    assert response.status_code == 400
    error = response.get_json()
    assert list(error) == ["error"] and "num_predict" in error["error"]
    assert fake_backend.history == []  # refused before anything reached the model


@pytest.mark.parametrize("num_predict", [-1, -2, 0])
def test_num_predict_minus_one_minus_two_and_zero_still_run_to_the_end_of_the_context(client, fake_backend,
                                                                                      num_predict):
    """Ollama's special values keep their meaning: no limit but the context."""
    fake_backend.enqueue("x" * 1000, end=False)
    body = client.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                              "options": {"num_predict": num_predict}}).get_json()
    assert body["done_reason"] == "length"
    assert body["eval_count"] + body["prompt_eval_count"] >= 255  # the 256-token context, not a small cap
