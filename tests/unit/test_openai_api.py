"""OpenAI routes on the scripted back-end: shapes, framing and every error in OpenAI's form."""
import json
import threading
import time

import pytest

from ollama_server.services import EXTENSION_KEY


def sse_payloads(response) -> list:
    events = [line[len("data: "):] for line in response.get_data(as_text=True).split("\n\n") if line]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def test_chat_completion_has_the_openai_shape(client, fake_backend):
    fake_backend.enqueue("Paris.")
    response = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
        {"role": "user", "content": "Capital of France?"}]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Paris."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 6
    assert response.headers["X-Request-Id"] == body["id"]


def test_chat_stream_frames_role_content_finish_usage_done(client, fake_backend):
    fake_backend.enqueue("Hi!")
    response = client.post("/v1/chat/completions", json={
        "model": "tiny", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hello"}]})
    assert response.mimetype == "text/event-stream"
    events = sse_payloads(response)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[1:-2]) == "Hi!"
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 3
    assert all(e["usage"] is None for e in events[:-2])
    assert events[-1] == "[DONE]"


def test_completion_defaults_to_16_tokens(client, fake_backend):
    fake_backend.enqueue("x" * 40, end=False)
    body = client.post("/v1/completions", json={"model": "tiny", "prompt": "Once"}).get_json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "x" * 16
    assert body["choices"][0]["finish_reason"] == "length"


def test_completion_with_several_prompts_gives_one_choice_each(client, fake_backend):
    fake_backend.enqueue("A")
    fake_backend.enqueue("B")
    body = client.post("/v1/completions", json={"model": "tiny", "prompt": ["1", "2"]}).get_json()
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, "A"), (1, "B")]


def test_completion_echo_prefixes_the_prompt(client, fake_backend):
    fake_backend.enqueue(" there")
    body = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "echo": True}).get_json()
    assert body["choices"][0]["text"] == "hi there"


def test_completion_stream_ends_with_done(client, fake_backend):
    fake_backend.enqueue("abc")
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "stream": True})
    events = sse_payloads(response)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "abc"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"


def test_models_list_and_get(client):
    listing = client.get("/v1/models").get_json()
    assert [m["id"] for m in listing["data"]] == ["big:latest", "tiny:latest"]
    assert client.get("/v1/models/tiny").get_json()["id"] == "tiny:latest"
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.get_json()["error"]["type"] == "not_found_error"


def test_the_seed_alias_route_answers_chat(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/api/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert response.get_json()["choices"][0]["message"]["content"] == "ok"


BAD_REQUESTS = [
    ("malformed json", "/v1/chat/completions", b'{"messages": [', 400, None),
    ("empty body", "/v1/chat/completions", b"", 400, None),
    ("body is a list", "/v1/chat/completions", b"[1,2]", 400, None),
    ("missing messages", "/v1/chat/completions", {"model": "tiny"}, 400, "messages"),
    ("messages not a list", "/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
    ("empty messages", "/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("bad role", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
    ("max_tokens zero", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
     400, "max_tokens"),
    ("max_tokens string", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                   "max_tokens": "5"}, 400, "max_tokens"),
    ("temperature too high", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                      "temperature": 3}, 400, "temperature"),
    ("stream_options without stream", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                               "stream_options": {"include_usage": True}}, 400,
     "stream_options"),
    ("unknown model", "/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]},
     404, "model"),
    ("prompt missing", "/v1/completions", {"model": "tiny"}, 400, "prompt"),
    ("prompt wrong type", "/v1/completions", {"prompt": 5}, 400, "prompt"),
    ("negative max_tokens", "/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
    ("token out of vocabulary", "/v1/completions", {"prompt": [1, 99999999]}, 400, "prompt"),
    ("prompt too long", "/v1/completions", {"prompt": "x" * 300}, 400, "messages"),
]


@pytest.mark.parametrize("name,path,payload,status,param", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_openai_errors(client, name, path, payload, status, param):
    if isinstance(payload, bytes):
        response = client.post(path, data=payload, content_type="application/json")
    else:
        response = client.post(path, json=payload)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert (error["param"] or "").startswith(param)


def test_a_prompt_over_the_context_names_the_numbers(client):
    error = client.post("/v1/completions", json={"prompt": "x" * 300}).get_json()["error"]
    assert "256" in error["message"] and "300" in error["message"]
    assert error["code"] == "context_length_exceeded"


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(max_request_bytes=2048).test_client()
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 5000}]})
    assert response.status_code == 413
    assert response.get_json()["error"]["type"] == "invalid_request_error"


def test_a_full_queue_is_429_with_retry_after(make_app, fake_backend):
    client = make_app(max_queue=0).test_client()
    fake_backend.gate.clear()
    holder = threading.Thread(target=lambda: client.post("/v1/completions", json={"prompt": "a", "max_tokens": 3}))
    holder.start()
    try:
        for _ in range(100):
            if client.application.extensions[EXTENSION_KEY].engine.snapshot().running:
                break
            time.sleep(0.02)
        response = client.post("/v1/completions", json={"prompt": "b", "max_tokens": 3})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.get_json()["error"]["type"] == "rate_limit_error"
    finally:
        fake_backend.gate.set()
        holder.join()


def test_unknown_v1_routes_are_404_in_openai_shape(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["type"] == "not_found_error"


def test_wrong_method_is_405(client):
    assert client.get("/v1/chat/completions").status_code == 405


def test_api_key_is_required_when_set(make_app, fake_backend):
    client = make_app(api_key="s3cret").test_client()
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_think_tags_move_to_reasoning_fields(client, fake_backend):
    fake_backend.enqueue("<think>plan it</think>The answer.")
    message = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
        {"role": "user", "content": "q"}]}).get_json()["choices"][0]["message"]
    assert message["content"] == "The answer."
    assert message["reasoning_content"] == message["reasoning"] == "plan it"


def test_streamed_think_tags_split_across_chunks_are_still_separated(client, fake_backend):
    fake_backend.enqueue("<think>a<b</think>c</thi")  # one character per token: every tag is split
    events = sse_payloads(client.post("/v1/chat/completions", json={
        "model": "tiny", "stream": True, "messages": [{"role": "user", "content": "q"}]}))
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert reasoning == "a<b"
    assert content == "c</thi"
    assert all(d.get("reasoning") == d.get("reasoning_content") for d in deltas)


def test_chat_without_max_tokens_is_capped_by_the_configured_default(make_app, fake_backend):
    client = make_app(default_max_tokens=5).test_client()
    fake_backend.enqueue("x" * 50, end=False)
    body = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).get_json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"


def test_a_default_cap_beyond_the_context_is_shortened_not_refused(make_app, fake_backend):
    client = make_app(default_max_tokens=10000).test_client()
    fake_backend.enqueue("ok")
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("prompt", [[], [[]], [[1, 2], []]], ids=["no prompts", "one empty token list",
                                                                  "an empty token list among others"])
def test_it_returns_400_for_an_empty_prompt_list(client, fake_backend, prompt, stream):
    """An empty prompt list is vLLM's 400 'please provide at least one prompt', not a 500."""
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": prompt, "stream": stream})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == "prompt"
    assert "please provide at least one prompt" in error["message"]
    assert fake_backend.history == []


@pytest.mark.parametrize("engine_reason,reason", [("stop", "stop"), ("length", "length"), ("cancelled", "abort"),
                                                  (None, None)])
def test_finish_reason_is_vllms_abort_for_a_dismissed_request(engine_reason, reason):
    """OpenAI has no 'cancelled': a dismissed request gets vLLM's FinishReason.ABORT value, not 'stop'."""
    from ollama_server.api.openai import translate
    assert translate.finish_reason(engine_reason) == reason
