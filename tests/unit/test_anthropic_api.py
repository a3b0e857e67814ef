"""Anthropic Messages routes on the scripted back-end: the Message shape, the SSE sequence, errors and x-api-key."""
from __future__ import annotations

import json
import threading
from typing import Callable

from ollama_server.engine.types import UnavailableError
from ollama_server.services import EXTENSION_KEY

GUARD_S = 30.0  # failure guard only: every wait ends as soon as its condition holds
HI = [{"role": "user", "content": "Hello"}]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a predicate; the deadline only turns a hang into a failure."""
    pause = threading.Event()
    for _ in range(int(GUARD_S / 0.005)):
        if condition():
            return
        pause.wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(text: str) -> list[tuple[str, dict]]:
    """(event name, data) pairs of an SSE body; every data must repeat its event's name as its type."""
    found = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name_line, data_line = frame.split("\n")
        name, data = name_line[len("event: "):], json.loads(data_line[len("data: "):])
        assert data["type"] == name
        found.append((name, data))
    return found


def test_a_message_has_anthropics_shape(client, fake_backend):
    fake_backend.enqueue("Paris.")
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 32, "messages": HI})
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": "Paris."}]
    assert body["model"] == "tiny:latest"
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"]["output_tokens"] == 6 and body["usage"]["input_tokens"] > 0
    assert response.headers["request-id"] == response.headers["X-Request-Id"] == body["id"]


def test_the_reply_is_generated_from_the_chat_template_with_the_system_prompt(client, fake_backend):
    fake_backend.enqueue("ok")
    client.post("/v1/messages", json={"model": "tiny", "max_tokens": 8, "system": "Be brief.", "messages": HI})
    prompt = "".join(chr(t) for t in fake_backend.history[-1][1])
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                      "<|im_start|>assistant\n")


def test_max_tokens_ends_with_stop_reason_max_tokens(client, fake_backend):
    fake_backend.enqueue("abcdefgh", end=False)
    body = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 3, "messages": HI}).get_json()
    assert body["content"][0]["text"] == "abc" and body["stop_reason"] == "max_tokens"


def test_a_stop_sequence_is_named_in_the_answer(client, fake_backend):
    fake_backend.enqueue("one two END three")
    body = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 50, "messages": HI,
                                             "stop_sequences": ["END"]}).get_json()
    assert body["content"][0]["text"] == "one two "
    assert body["stop_reason"] == "stop_sequence" and body["stop_sequence"] == "END"


def test_enabled_thinking_comes_back_as_a_thinking_block_and_disabled_thinking_not_at_all(client, fake_backend):
    fake_backend.enqueue("<think>let me see</think>42")
    enabled = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 2048, "messages": HI,
                                                "thinking": {"type": "enabled", "budget_tokens": 1024}}).get_json()
    assert enabled["content"] == [{"type": "thinking", "thinking": "let me see", "signature": ""},
                                  {"type": "text", "text": "42"}]
    fake_backend.enqueue("<think>let me see</think>42")
    disabled = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 64, "messages": HI}).get_json()
    assert disabled["content"] == [{"type": "text", "text": "42"}]


def test_the_stream_is_anthropics_event_sequence(client, fake_backend):
    fake_backend.enqueue("<think>hm</think>Hi!")
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 2048, "stream": True,
                                                 "messages": HI, "thinking": {"type": "enabled",
                                                                              "budget_tokens": 1024}})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = events_of(response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names == (["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 2
                     + ["content_block_stop", "content_block_start"] + ["content_block_delta"] * 3
                     + ["content_block_stop", "message_delta", "message_stop"])
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["id"].startswith("msg_")
    assert start["usage"]["input_tokens"] > 0
    assert events[1][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    thinking = "".join(d["delta"]["thinking"] for n, d in events if n == "content_block_delta" and d["index"] == 0)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 1)
    assert thinking == "hm" and text == "Hi!"
    assert events[6][1]["content_block"] == {"type": "text", "text": ""}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == len("<think>hm</think>Hi!")


def test_an_empty_streamed_reply_still_has_one_text_block(client, fake_backend):
    fake_backend.enqueue("")
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 8, "stream": True, "messages": HI})
    names = [name for name, _ in events_of(response.get_data(as_text=True))]
    assert names == ["message_start", "content_block_start", "ping", "content_block_stop", "message_delta",
                     "message_stop"]


def test_a_streamed_stop_sequence_is_in_the_message_delta(client, fake_backend):
    fake_backend.enqueue("abc||def")
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 20, "stream": True,
                                                 "messages": HI, "stop_sequences": ["||"]})
    events = events_of(response.get_data(as_text=True))
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "||"}


def test_a_failure_after_the_stream_began_is_an_error_event(make_app, fake_backend):
    client = make_app().test_client()
    engine = client.application.extensions[EXTENSION_KEY].engine
    fake_backend.gate.clear()  # hold the generation before its first token
    try:
        response = client.post("/v1/messages", headers={"X-Request-Id": "held-1"}, buffered=False,
                               json={"model": "tiny", "max_tokens": 8, "stream": True, "messages": HI})
        frames = iter(response.response)
        assert next(frames).startswith(b"event: message_start")
        wait_until(lambda: engine.get_request("held-1") is not None, "the request to be booked")
        engine.get_request("held-1").fail(UnavailableError("the server is shutting down"))
        rest = b"".join(frames).decode()
    finally:
        fake_backend.gate.set()
    assert events_of(rest)[-1] == ("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "the server is shutting down"}})


def test_count_tokens_is_the_prompt_a_message_would_be_given(client, fake_backend):
    body = {"model": "tiny", "system": "S", "messages": HI}
    counted = client.post("/v1/messages/count_tokens", json=body)
    assert counted.status_code == 200
    fake_backend.enqueue("x")
    client.post("/v1/messages", json={**body, "max_tokens": 4})
    assert counted.get_json() == {"input_tokens": len(fake_backend.history[-1][1])}


def test_a_missing_max_tokens_is_a_400_in_anthropics_shape(client):
    response = client.post("/v1/messages", json={"model": "tiny", "messages": HI})
    assert response.status_code == 400
    assert response.get_json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                              "message": "max_tokens: Field required"}}


def test_an_unknown_field_is_refused_by_name(client):
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 4, "messages": HI, "top_n": 3})
    assert response.status_code == 400 and "top_n" in response.get_json()["error"]["message"]


def test_content_that_is_neither_text_nor_blocks_is_a_400_naming_it(client):
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 4,
                                                 "messages": [{"role": "user", "content": 5}]})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("messages.0.content: ")


def test_an_image_block_is_a_400_naming_it(client):
    response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": ""}}]}]})
    assert response.status_code == 400 and "messages.0.content.0: image" in response.get_json()["error"]["message"]


def test_an_unknown_model_is_404_not_found_error(client):
    response = client.post("/v1/messages", json={"model": "claude-nope", "max_tokens": 4, "messages": HI})
    assert response.status_code == 404 and response.get_json()["error"]["type"] == "not_found_error"


def test_unknown_routes_and_wrong_methods_under_v1_messages_answer_in_anthropics_shape(client):
    assert client.post("/v1/messages/batches").get_json()["error"]["type"] == "not_found_error"
    wrong = client.get("/v1/messages")
    assert wrong.status_code == 405 and wrong.get_json()["type"] == "error"


def test_a_full_queue_is_529_overloaded_error(make_app, fake_backend):
    client = make_app(max_queue=0).test_client()
    engine = client.application.extensions[EXTENSION_KEY].engine
    fake_backend.gate.clear()
    holder = threading.Thread(target=lambda: client.post("/v1/messages", json={
        "model": "tiny", "max_tokens": 3, "messages": HI}))
    holder.start()
    try:
        wait_until(lambda: engine.snapshot().running, "the first request to run")
        response = client.post("/v1/messages", json={"model": "tiny", "max_tokens": 3, "messages": HI})
        assert response.status_code == 529
        assert response.get_json()["error"]["type"] == "overloaded_error"
        assert response.headers["Retry-After"] == "1"
    finally:
        fake_backend.gate.set()
        holder.join()


def test_x_api_key_is_accepted_as_the_key_on_the_messages_routes(make_app, fake_backend):
    client = make_app(api_key="s3cret").test_client()
    fake_backend.enqueue("ok")
    body = {"model": "tiny", "max_tokens": 4, "messages": HI}
    ok = client.post("/v1/messages", json=body, headers={"x-api-key": "s3cret", "anthropic-version": "2023-06-01"})
    assert ok.status_code == 200
    counted = client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": HI},
                          headers={"x-api-key": "s3cret"})
    assert counted.status_code == 200
    fake_backend.enqueue("ok")
    assert client.post("/v1/messages", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_wrong_or_missing_key_on_messages_is_401_authentication_error(make_app):
    client = make_app(api_key="s3cret").test_client()
    body = {"model": "tiny", "max_tokens": 4, "messages": HI}
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"Authorization": "Bearer wrong"}):
        response = client.post("/v1/messages", json=body, headers=headers)
        assert response.status_code == 401
        assert response.get_json() == {"type": "error", "error": {"type": "authentication_error",
                                                                  "message": "invalid x-api-key"}}


def test_x_api_key_opens_the_other_routes_too(make_app):
    client = make_app(api_key="s3cret").test_client()
    assert client.get("/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200
    response = client.get("/v1/models", headers={"x-api-key": "wrong"})
    assert response.status_code == 401 and response.get_json() == {"error": "Unauthorized"}


def test_a_refused_messages_request_is_recorded_as_anthropic(client):
    client.post("/v1/messages", json={"model": "tiny", "messages": HI})
    records, _ = client.application.extensions[EXTENSION_KEY].engine.records.since(0)
    assert [(r.dialect, r.endpoint, r.http_status) for r in records] == [("anthropic", "/v1/messages", 400)]
