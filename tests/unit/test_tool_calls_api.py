"""Tool calling through the OpenAI and Ollama chat routes on the scripted back-end: prompts, grammars, replies,
stream chunk sequences and the 400s."""
from __future__ import annotations

import json

import pytest

from tests.unit.ollama_support import ndjson

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
USER = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def client(make_app):
    # The fake tokenizer is one token per character: the tools' description needs more than 256.
    return make_app(default_context_size=4096).test_client()


def sse_payloads(response) -> list:
    events = [line[len("data: "):] for line in response.get_data(as_text=True).split("\n\n") if line]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def last_prompt(fake_backend) -> str:
    return "".join(chr(t) for t in fake_backend.history[-1][1])


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, **body})


# --- OpenAI ----------------------------------------------------------------------------------------
def test_openai_auto_returns_parsed_tool_calls_with_finish_reason_tool_calls(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = chat(client, tools=[WEATHER]).get_json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert fake_backend.grammars[-1] is None  # auto: offered, not forced


def test_tools_reach_a_template_without_tools_as_a_system_message_with_the_call_format(client, fake_backend):
    fake_backend.enqueue("No call.")
    body = chat(client, tools=[WEATHER]).get_json()
    assert body["choices"][0] == {**body["choices"][0], "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "No call."}}
    prompt = last_prompt(fake_backend)
    assert prompt.startswith("<|im_start|>system\n") and '"name": "get_weather"' in prompt
    assert "<tool_call>" in prompt and "Current weather of a city" in prompt


def test_tool_choice_none_neither_offers_nor_parses(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = chat(client, tools=[WEATHER], tool_choice="none").get_json()
    assert body["choices"][0]["message"]["content"] == CALL and body["choices"][0]["finish_reason"] == "stop"
    assert "get_weather" not in last_prompt(fake_backend)


def test_tool_choice_required_constrains_generation_with_a_grammar_of_the_tool_schemas(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = chat(client, tools=[WEATHER, TIME], tool_choice="required").get_json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    grammar = fake_backend.grammars[-1]
    assert grammar.startswith('root ::= "<tool_call>\\n" tool-call-object "\\n</tool_call>" ("\\n"')
    assert "get_weather" in grammar and "get_time" in grammar  # the fake converter names the schema


def test_a_named_tool_choice_forces_only_that_tool_and_one_call_without_parallel(client, fake_backend):
    fake_backend.enqueue('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    body = chat(client, tools=[WEATHER, TIME], parallel_tool_calls=False,
                tool_choice={"type": "function", "function": {"name": "get_time"}}).get_json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_time"
    grammar = fake_backend.grammars[-1]
    assert "get_time" in grammar and "get_weather" not in grammar
    assert grammar.splitlines()[0] == 'root ::= "<tool_call>\\n" tool-call-object "\\n</tool_call>"'


def test_streamed_tool_calls_arrive_as_indexed_deltas_then_finish_tool_calls(client, fake_backend):
    fake_backend.enqueue("Checking." + CALL + '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>')
    events = sse_payloads(chat(client, tools=[WEATHER, TIME], stream=True))
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == "Checking."
    pieces = [p for d in deltas for p in d.get("tool_calls", [])]
    assert pieces[0]["index"] == 0 and pieces[0]["id"].startswith("call_") and pieces[0]["type"] == "function"
    assert pieces[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert pieces[1] == {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
    assert pieces[2]["index"] == 1 and pieces[2]["function"]["name"] == "get_time"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls" and events[-1] == "[DONE]"


def test_a_malformed_call_is_returned_as_content_not_an_error(client, fake_backend):
    broken = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
    fake_backend.enqueue(broken)
    response = chat(client, tools=[WEATHER])
    assert response.status_code == 200
    assert response.get_json()["choices"][0]["message"] == {"role": "assistant", "content": broken}


def test_history_tool_calls_and_tool_results_reach_the_prompt(client, fake_backend):
    fake_backend.enqueue("It is sunny.")
    messages = USER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'}]
    body = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages,
                                                      "tools": [WEATHER]}).get_json()
    assert body["choices"][0]["message"]["content"] == "It is sunny."
    prompt = last_prompt(fake_backend)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert '<tool_response>\n{"sky": "sunny"}\n</tool_response>' in prompt


@pytest.mark.parametrize("extra, field", [
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}],
      "tool_choice": "required"}, "tools"),
])
def test_openai_refuses_what_it_cannot_honour_with_a_400_naming_the_field(client, extra, field):
    response = chat(client, **extra)
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == field


def test_openai_refuses_history_arguments_that_are_not_a_json_object(client):
    messages = USER + [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]
    response = client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages})
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


# --- Ollama ----------------------------------------------------------------------------------------
def test_ollama_chat_returns_tool_calls_with_object_arguments(client, fake_backend):
    fake_backend.enqueue(CALL)
    body = client.post("/api/chat", json={"model": "tiny", "messages": USER, "tools": [WEATHER],
                                          "stream": False}).get_json()
    assert body["done"] is True and body["done_reason"] == "stop"
    [call] = body["message"]["tool_calls"]
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    assert body["message"]["content"] == ""


def test_ollama_streams_each_call_whole_in_one_line(client, fake_backend):
    fake_backend.enqueue("Sure. " + CALL)
    lines = ndjson(client.post("/api/chat", json={"model": "tiny", "messages": USER, "tools": [WEATHER]}))
    with_calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert "".join(line["message"]["content"] for line in lines) == "Sure. "
    assert lines[-1]["done"] is True


def test_ollama_tool_role_round_trip_reaches_the_prompt(client, fake_backend):
    fake_backend.enqueue("Sunny.")
    messages = USER + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"}]
    body = client.post("/api/chat", json={"model": "tiny", "messages": messages, "tools": [WEATHER],
                                          "stream": False}).get_json()
    assert body["message"]["content"] == "Sunny."
    prompt = last_prompt(fake_backend)
    assert '"arguments": {"city": "Paris"}' in prompt and "<tool_response>\nsunny\n</tool_response>" in prompt


def test_ollama_refuses_a_malformed_tool_with_a_400_naming_it(client):
    response = client.post("/api/chat", json={"model": "tiny", "messages": USER,
                                              "tools": [{"type": "function", "function": {}}]})
    assert response.status_code == 400 and "tools[0].function.name" in response.get_json()["error"]
