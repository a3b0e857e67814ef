"""Anthropic tool use on the scripted back-end: tool_use blocks, the streamed event sequence, grammars, the
history reaching the prompt, and the SDK's own accumulator reading our stream."""
from __future__ import annotations

import json

import pytest
from anthropic.lib.streaming._messages import accumulate_event

from tests.unit.test_anthropic_api import events_of

WEATHER = {"name": "get_weather", "description": "Current weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def client(make_app):
    # The fake tokenizer is one token per character: the tools' description needs more than 256.
    return make_app(default_context_size=4096).test_client()


def post(client, **fields):
    return client.post("/v1/messages", json={"model": "tiny", "max_tokens": 200, "messages": ASK,
                                             "tools": [WEATHER], **fields})


def prompt_of(fake_backend) -> str:
    return "".join(chr(t) for t in fake_backend.history[-1][1])


def test_a_hermes_call_comes_back_as_a_tool_use_block_with_stop_reason_tool_use(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = post(client).get_json()
    [block] = body["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "get_weather" and block["input"] == {"city": "Paris"}
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert fake_backend.grammars[-1] is None  # auto: offered and parsed, not forced
    prompt = prompt_of(fake_backend)
    assert '"name": "get_weather"' in prompt and "Current weather of a city" in prompt


def test_text_before_a_call_is_a_text_block_then_the_tool_use_block(client, fake_backend):
    fake_backend.enqueue("Let me check. " + CALL)
    body = post(client).get_json()
    assert [b["type"] for b in body["content"]] == ["text", "tool_use"]
    assert body["content"][0]["text"].strip() == "Let me check."


def test_a_named_tool_choice_constrains_generation_with_a_grammar_of_that_tool(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = post(client, tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True})
    assert body.status_code == 200 and body.get_json()["content"][0]["name"] == "get_weather"
    grammar = fake_backend.grammars[-1]
    assert grammar is not None and "<tool_call>" in grammar and "get_weather" in grammar


def test_tool_choice_none_neither_offers_the_tools_nor_parses_the_reply(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = post(client, tool_choice={"type": "none"}).get_json()
    assert body["content"] == [{"type": "text", "text": CALL}] and body["stop_reason"] == "end_turn"
    assert "get_weather" not in prompt_of(fake_backend)


def test_a_plain_answer_with_tools_offered_is_text_and_end_turn(client, fake_backend):
    fake_backend.enqueue("It is sunny.")
    body = post(client).get_json()
    assert body["content"] == [{"type": "text", "text": "It is sunny."}] and body["stop_reason"] == "end_turn"


def test_the_streamed_call_is_a_tool_use_block_with_its_input_as_one_input_json_delta(client, fake_backend):
    fake_backend.enqueue("Checking. " + CALL)
    events = events_of(post(client, stream=True).get_data(as_text=True))
    names = [(name, data.get("index")) for name, data in events]
    text_deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta" and d["index"] == 0]
    assert "".join(text_deltas) == "Checking. "
    assert names == ([("message_start", None), ("content_block_start", 0), ("ping", None)]
                     + [("content_block_delta", 0)] * len(text_deltas)
                     + [("content_block_stop", 0), ("content_block_start", 1), ("content_block_delta", 1),
                        ("content_block_stop", 1), ("message_delta", None), ("message_stop", None)])
    start = next(d for n, d in events if n == "content_block_start" and d["index"] == 1)
    block = start["content_block"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert (block["name"], block["input"]) == ("get_weather", {})
    [delta] = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert delta["type"] == "input_json_delta" and json.loads(delta["partial_json"]) == {"city": "Paris"}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_the_sdks_stream_accumulator_turns_our_events_into_a_tool_use_block(client, fake_backend):
    fake_backend.enqueue(CALL + "\n" + CALL.replace("Paris", "Oslo"))
    events = events_of(post(client, stream=True).get_data(as_text=True))
    snapshot, buffers = None, {}
    for name, data in events:
        if name != "ping":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=buffers)
    assert [(b.type, b.name, b.input) for b in snapshot.content] == [
        ("tool_use", "get_weather", {"city": "Paris"}), ("tool_use", "get_weather", {"city": "Oslo"})]
    assert snapshot.content[0].id != snapshot.content[1].id and snapshot.stop_reason == "tool_use"


def test_disable_parallel_tool_use_keeps_only_the_first_call(client, fake_backend):
    fake_backend.enqueue(CALL + "\n" + CALL.replace("Paris", "Oslo"))
    body = post(client, tool_choice={"type": "auto", "disable_parallel_tool_use": True}).get_json()
    assert [b["input"] for b in body["content"]] == [{"city": "Paris"}]


def test_a_tool_result_reaches_the_prompt_and_the_model_answers_in_text(client, fake_backend):
    fake_backend.enqueue("It is 18 C in Paris.")
    body = post(client, messages=ASK + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_abc", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_abc",
                                      "content": [{"type": "text", "text": "18 C, sunny"}]}]}]).get_json()
    assert body["content"] == [{"type": "text", "text": "It is 18 C in Paris."}] and body["stop_reason"] == "end_turn"
    prompt = prompt_of(fake_backend)
    # The ChatML fallback has no tool role: the call is written out and the result is a <tool_response> turn.
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\n18 C, sunny\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_count_tokens_counts_the_tools_offered(client):
    plain = client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK}).get_json()
    with_tools = client.post("/v1/messages/count_tokens", json={"model": "tiny", "messages": ASK,
                                                                "tools": [WEATHER]}).get_json()
    assert with_tools["input_tokens"] > plain["input_tokens"] + len("Current weather of a city")


def test_a_bad_tool_is_a_400_in_anthropics_shape_naming_the_field(client):
    for route, extra in (("/v1/messages", {"max_tokens": 4}), ("/v1/messages/count_tokens", {})):
        response = client.post(route, json={"model": "tiny", "messages": ASK, **extra,
                                            "tools": [{"name": "f", "input_schema": {"type": "string"}}]})
        assert response.status_code == 400
        assert response.get_json() == {"type": "error", "error": {
            "type": "invalid_request_error", "message": "tools.0.input_schema.type: must be 'object'"}}


def test_a_tool_result_for_an_unknown_tool_use_is_a_400_naming_it(client):
    response = post(client, messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}])
    assert response.status_code == 400
    assert response.get_json()["error"]["message"].startswith("messages.0.content.0.tool_use_id: ")
