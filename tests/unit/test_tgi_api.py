"""TGI routes on the scripted back-end: shapes, SSE framing, headers and every error in TGI's form."""
from __future__ import annotations

import json
import threading
import time

import pytest

from ollama_server.engine.types import EngineError
from ollama_server.services import EXTENSION_KEY
from tests.fakes.backend import FakeModel


def sse_lines(response) -> list[str]:
    return [line for line in response.get_data(as_text=True).split("\n") if line]


def sse_payloads(response) -> list[dict]:
    return [json.loads(line[len("data:"):]) for line in sse_lines(response)]


def assert_tgi_framing(response) -> list[dict]:
    """data:{json} with no space, no [DONE], indexes 1..n, generated_text only on the last event."""
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.get_data(as_text=True).endswith("\n\n")
    lines = sse_lines(response)
    assert lines and all(line.startswith("data:{") for line in lines)
    assert not any("[DONE]" in line for line in lines)
    events = sse_payloads(response)
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["generated_text"] is None for e in events[:-1])
    assert isinstance(events[-1]["generated_text"], str)
    assert all(set(e["token"]) == {"id", "text", "logprob", "special"} for e in events)
    return events


def test_generate_returns_text_and_tgi_headers(client, fake_backend):
    fake_backend.enqueue("Paris.")
    response = client.post("/generate", json={"inputs": "Capital of France?"})
    assert response.status_code == 200
    assert response.get_json() == {"generated_text": "Paris."}
    headers = response.headers
    assert headers["x-compute-type"] == "cpu"
    assert headers["x-prompt-tokens"] == str(len("Capital of France?")) and headers["x-generated-tokens"] == "6"
    for name in ("x-compute-time", "x-total-time", "x-queue-time", "x-inference-time", "x-time-per-token"):
        float(headers[name])
    assert headers["X-Request-Id"].startswith("tgi-")


def test_generate_details_list_every_token(client, fake_backend):
    fake_backend.enqueue("ok")
    body = client.post("/generate", json={"inputs": "x", "parameters": {"details": True}}).get_json()
    details = body["details"]
    assert details["finish_reason"] == "eos_token" and details["generated_tokens"] == 2
    assert [t["text"] for t in details["tokens"]] == ["o", "k"]
    assert details["seed"] is None and details["prefill"] == []


def test_decoder_input_details_fill_prefill_on_generate(client, fake_backend):
    fake_backend.enqueue("ok")
    body = client.post("/generate", json={"inputs": "ab", "parameters": {"details": True,
                                                                          "decoder_input_details": True}}).get_json()
    assert [(t["id"], t["text"]) for t in body["details"]["prefill"]] == [(97, "a"), (98, "b")]


def test_max_new_tokens_ends_with_length(client, fake_backend):
    fake_backend.enqueue("abcdefgh", end=False)
    body = client.post("/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 3,
                                                                         "details": True}}).get_json()
    assert body["generated_text"] == "abc"
    assert body["details"]["finish_reason"] == "length" and body["details"]["generated_tokens"] == 3


def test_unset_max_new_tokens_means_100(client, fake_backend):
    fake_backend.enqueue("", end=False)
    body = client.post("/generate", json={"inputs": "x", "parameters": {"details": True}}).get_json()
    assert body["details"]["generated_tokens"] == 100


def test_unset_max_new_tokens_is_shortened_to_fit_the_context(client, fake_backend):
    fake_backend.enqueue("", end=False)
    body = client.post("/generate", json={"inputs": "x" * 200, "parameters": {"details": True}}).get_json()
    assert body["details"]["generated_tokens"] == 56  # context 256 - 200 prompt tokens


def test_a_stop_sequence_ends_it_and_stays_in_the_text(client, fake_backend):
    fake_backend.enqueue("Hello world, again")
    body = client.post("/generate", json={"inputs": "x", "parameters": {"stop": ["wor"], "details": True}}).get_json()
    assert body["generated_text"] == "Hello wor"
    assert body["details"]["finish_reason"] == "stop_sequence"


def test_return_full_text_prefixes_the_inputs(client, fake_backend):
    fake_backend.enqueue(" there")
    body = client.post("/generate", json={"inputs": "hi", "parameters": {"return_full_text": True}}).get_json()
    assert body["generated_text"] == "hi there"


def test_no_sampling_parameters_means_greedy(client, fake_backend):
    fake_backend.enqueue("a")
    client.post("/generate", json={"inputs": "x", "parameters": {"repetition_penalty": 1.2}})
    sampling = fake_backend.history[-1][2]
    assert sampling.temperature == 0.0 and sampling.repeat_penalty == 1.2


def test_do_sample_samples_and_reports_the_seed(client, fake_backend):
    fake_backend.enqueue("a")
    body = client.post("/generate", json={"inputs": "x", "parameters": {"do_sample": True, "seed": 42,
                                                                         "details": True}}).get_json()
    sampling = fake_backend.history[-1][2]
    assert sampling.temperature == 1.0 and sampling.seed == 42
    assert body["details"]["seed"] == 42


def test_truncate_keeps_the_last_input_tokens(client, fake_backend):
    fake_backend.enqueue("a")
    client.post("/generate", json={"inputs": "abcdef", "parameters": {"truncate": 2}})
    assert fake_backend.history[-1][1] == [ord("e"), ord("f")]


def test_a_model_can_be_named_top_level_or_in_parameters(client, fake_backend):
    fake_backend.enqueue("a")
    fake_backend.enqueue("b")
    client.post("/generate", json={"inputs": "x", "model": "big"})
    assert fake_backend.history[-1][0].endswith("big.gguf")
    client.post("/generate", json={"inputs": "x", "parameters": {"model": "tiny"}})
    assert fake_backend.history[-1][0].endswith("tiny.gguf")


def test_generate_stream_frames_one_event_per_token(client, fake_backend):
    fake_backend.enqueue("Hi!")
    response = client.post("/generate_stream", json={"inputs": "Hello"})
    events = assert_tgi_framing(response)
    assert [e["token"]["text"] for e in events] == ["H", "i", "!"]
    assert all(e["token"]["logprob"] is not None for e in events)
    assert events[-1]["generated_text"] == "Hi!"
    assert all(e["details"] is None for e in events)
    assert response.headers["X-Request-Id"].startswith("tgi-")


def test_stream_details_only_when_asked_and_only_last(client, fake_backend):
    fake_backend.enqueue("abc", end=False)
    response = client.post("/generate_stream", json={"inputs": "Hello", "parameters": {
        "details": True, "max_new_tokens": 2, "return_full_text": True}})
    events = assert_tgi_framing(response)
    assert all(e["details"] is None for e in events[:-1])
    assert events[-1]["details"] == {"finish_reason": "length", "generated_tokens": 2, "seed": None,
                                     "input_length": 5}
    assert events[-1]["generated_text"] == "Helloab"


def test_stream_with_no_tokens_still_sends_one_final_event(client, fake_backend):
    fake_backend.enqueue("")
    events = assert_tgi_framing(client.post("/generate_stream", json={"inputs": "x"}))
    assert len(events) == 1 and events[0]["token"]["special"] is True and events[0]["generated_text"] == ""


def test_stream_top_tokens_with_top_n_tokens(client, fake_backend):
    fake_backend.enqueue("ab")
    events = assert_tgi_framing(client.post("/generate_stream", json={
        "inputs": "x", "parameters": {"details": True, "top_n_tokens": 2}}))
    assert events[0]["top_tokens"][0]["text"] == "a"


def test_a_failure_mid_stream_is_an_error_event(client, fake_backend, monkeypatch):
    original = FakeModel.logprobs

    def failing(self, row, token, top_n):
        if token == ord("c"):
            raise EngineError("the back-end failed")
        return original(self, row, token, top_n)
    monkeypatch.setattr(FakeModel, "logprobs", failing)
    fake_backend.enqueue("abcd")
    response = client.post("/generate_stream", json={"inputs": "x"})
    assert all(line.startswith("data:{") for line in sse_lines(response))
    events = sse_payloads(response)
    assert [e.get("index") for e in events[:-1]] == [1, 2]
    assert events[-1] == {"error": "the back-end failed", "error_type": "generation"}


def test_root_post_returns_a_one_element_list(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/", json={"inputs": "x", "parameters": {"max_new_tokens": 5}})
    assert response.status_code == 200
    assert response.get_json() == [{"generated_text": "ok"}]
    assert response.headers["x-generated-tokens"] == "2"


def test_root_post_streams_when_asked(client, fake_backend):
    fake_backend.enqueue("ok")
    events = assert_tgi_framing(client.post("/", json={"inputs": "x", "stream": True,
                                                       "parameters": {"details": True}}))
    assert events[-1]["generated_text"] == "ok" and events[-1]["details"]["finish_reason"] == "eos_token"


def test_root_post_needs_the_api_key_when_set(make_app, fake_backend):
    client = make_app(api_key="s3cret").test_client()
    assert client.post("/", json={"inputs": "x"}).status_code == 401
    fake_backend.enqueue("ok")
    response = client.post("/", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200


def test_info_describes_the_default_model(client):
    info = client.get("/info").get_json()
    assert info["model_id"] == "tiny:latest"
    assert info["max_total_tokens"] == 256 and info["max_input_tokens"] == 255
    assert info["max_concurrent_requests"] == 1 + 64
    assert info["max_best_of"] == 1 and info["max_stop_sequences"] == 4
    assert info["router"] == "text-generation-router" and info["version"]
    assert info["sha"] is None and info["docker_label"] is None


BAD_REQUESTS = [
    ("malformed json", "/generate", b'{"inputs": "x",'),
    ("empty body", "/generate", b""),
    ("body is a list", "/generate", b"[1]"),
    ("missing inputs", "/generate", {"parameters": {}}),
    ("inputs not a string", "/generate", {"inputs": 5}),
    ("empty inputs", "/generate", {"inputs": ""}),
    ("parameters not an object", "/generate", {"inputs": "x", "parameters": [1]}),
    ("temperature zero", "/generate", {"inputs": "x", "parameters": {"temperature": 0}}),
    ("temperature string", "/generate", {"inputs": "x", "parameters": {"temperature": "0.5"}}),
    ("top_p one", "/generate", {"inputs": "x", "parameters": {"top_p": 1.0}}),
    ("top_p above one", "/generate", {"inputs": "x", "parameters": {"top_p": 1.5}}),
    ("typical_p zero", "/generate", {"inputs": "x", "parameters": {"typical_p": 0}}),
    ("top_k zero", "/generate", {"inputs": "x", "parameters": {"top_k": 0}}),
    ("top_k float", "/generate", {"inputs": "x", "parameters": {"top_k": 2.5}}),
    ("repetition_penalty zero", "/generate", {"inputs": "x", "parameters": {"repetition_penalty": 0}}),
    ("frequency_penalty 3", "/generate", {"inputs": "x", "parameters": {"frequency_penalty": 3}}),
    ("max_new_tokens zero", "/generate", {"inputs": "x", "parameters": {"max_new_tokens": 0}}),
    ("max_new_tokens negative", "/generate", {"inputs": "x", "parameters": {"max_new_tokens": -1}}),
    ("max_new_tokens string", "/generate", {"inputs": "x", "parameters": {"max_new_tokens": "5"}}),
    ("five stops", "/generate", {"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}}),
    ("stop not a list", "/generate", {"inputs": "x", "parameters": {"stop": "a"}}),
    ("best_of two", "/generate", {"inputs": "x", "parameters": {"best_of": 2}}),
    ("watermark", "/generate", {"inputs": "x", "parameters": {"watermark": True}}),
    ("details not a bool", "/generate", {"inputs": "x", "parameters": {"details": 1}}),
    ("negative seed", "/generate", {"inputs": "x", "parameters": {"seed": -1}}),
    ("regex grammar with a lookahead", "/generate",
     {"inputs": "x", "parameters": {"grammar": {"type": "regex", "value": "(?=a)a"}}}),
    ("unknown grammar type", "/generate", {"inputs": "x", "parameters": {"grammar": {"type": "lark", "value": "a"}}}),
    ("too long for the context", "/generate", {"inputs": "x" * 250, "parameters": {"max_new_tokens": 10}}),
    ("inputs alone over the context", "/generate", {"inputs": "x" * 300}),
    ("unknown model", "/generate", {"inputs": "x", "model": "nope"}),
    ("decoder details on stream", "/generate_stream", {"inputs": "x", "parameters": {"decoder_input_details": True}}),
    ("stream temperature zero", "/generate_stream", {"inputs": "x", "parameters": {"temperature": 0}}),
    ("root empty inputs", "/", {"inputs": ""}),
    ("root stream not a bool", "/", {"inputs": "x", "stream": "yes"}),
]


@pytest.mark.parametrize("name,path,payload", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_are_422_validation_errors(client, name, path, payload):
    if isinstance(payload, bytes):
        response = client.post(path, data=payload, content_type="application/json")
    else:
        response = client.post(path, json=payload)
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "error_type"}
    assert body["error"] and body["error_type"] == "validation"


def test_tgi_messages_name_the_rule(client):
    def error(parameters, inputs="x"):
        return client.post("/generate", json={"inputs": inputs, "parameters": parameters}).get_json()["error"]
    assert error({"temperature": 0}) == "`temperature` must be strictly positive"
    assert error({}, inputs="") == "`inputs` cannot be empty"
    assert "256" in error({"max_new_tokens": 10}, inputs="x" * 250)
    assert "250" in error({"max_new_tokens": 10}, inputs="x" * 250)
    assert client.post("/generate", json={"inputs": "x", "model": "nope"}).get_json()["error"] == \
        "model 'nope' not found"


def test_a_body_over_the_limit_is_413_validation(make_app):
    client = make_app(max_request_bytes=2048).test_client()
    response = client.post("/generate", json={"inputs": "x" * 5000})
    assert response.status_code == 413
    assert response.get_json()["error_type"] == "validation"


def test_a_full_queue_is_429_overloaded(make_app, fake_backend):
    client = make_app(max_queue=0).test_client()
    fake_backend.gate.clear()
    holder = threading.Thread(target=lambda: client.post("/generate", json={
        "inputs": "a", "parameters": {"max_new_tokens": 3}}))
    holder.start()
    try:
        for _ in range(100):
            if client.application.extensions[EXTENSION_KEY].engine.snapshot().running:
                break
            time.sleep(0.02)
        response = client.post("/generate", json={"inputs": "b", "parameters": {"max_new_tokens": 3}})
        assert response.status_code == 429
        assert response.get_json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        assert response.headers["Retry-After"] == "1"
        streamed = client.post("/generate_stream", json={"inputs": "b"})
        assert streamed.status_code == 429 and streamed.get_json()["error_type"] == "overloaded"
    finally:
        fake_backend.gate.set()
        holder.join()


def test_get_on_generate_is_not_allowed(client):
    assert client.get("/generate").status_code == 405
