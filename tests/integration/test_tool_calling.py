"""Tool calling on the real model through the official `openai` and `ollama` clients. Gemma 3 270M is a base
model: forced calls (tool_choice required / named) are checked for shape and schema, free ones only for form."""
from __future__ import annotations

import json

import ollama
import openai
import pytest
import requests

pytestmark = pytest.mark.model
MODEL = "gemma3:270m"
CITIES = ["Paris", "Rome", "Oslo"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather forecast for a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "days"],
                   "properties": {"city": {"enum": CITIES}, "days": {"type": "integer"}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time now in a time zone",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"],
                   "properties": {"zone": {"enum": ["UTC", "CET"]}}}}}
ASK = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]


def valid_arguments(name: str, arguments: dict) -> bool:
    """The tools' schemas checked by hand (jsonschema is not a dependency)."""
    if name == "get_weather":
        return (set(arguments) == {"city", "days"} and arguments["city"] in CITIES
                and isinstance(arguments["days"], int) and not isinstance(arguments["days"], bool))
    return name == "get_time" and arguments == {"zone": arguments.get("zone")} and arguments["zone"] in ("UTC", "CET")


@pytest.fixture(scope="module")
def sdk(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def create(sdk, **fields):
    return sdk.chat.completions.create(model=MODEL, messages=ASK, max_tokens=80, temperature=0.7, seed=3,
                                       tools=[WEATHER, TIME], **fields)


def test_openai_required_gives_parsed_calls_whose_arguments_follow_the_schema(sdk):
    reply = create(sdk, tool_choice="required")
    choice = reply.choices[0]
    # Parallel calls are allowed: the base model may go on calling until max_tokens; what it finished counts.
    assert choice.finish_reason in ("tool_calls", "length") and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert valid_arguments(call.function.name, json.loads(call.function.arguments))


def test_openai_named_choice_calls_exactly_that_function_once(sdk):
    reply = create(sdk, tool_choice={"type": "function", "function": {"name": "get_time"}},
                   parallel_tool_calls=False)
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_time" and valid_arguments("get_time", json.loads(call.function.arguments))
    assert reply.choices[0].finish_reason == "tool_calls"


def test_openai_streamed_required_call_accumulates_into_valid_calls(sdk):
    stream = create(sdk, tool_choice={"type": "function", "function": {"name": "get_weather"}},
                    parallel_tool_calls=False, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        for piece in choice.delta.tool_calls or ():
            entry = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = piece.id or entry["id"]
            entry["name"] += (piece.function.name or "") if piece.function else ""
            entry["arguments"] += (piece.function.arguments or "") if piece.function else ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert valid_arguments("get_weather", json.loads(calls[0]["arguments"]))


def test_openai_stream_accumulator_of_the_sdk_reads_our_deltas(sdk):
    with sdk.chat.completions.stream(model=MODEL, messages=ASK, max_tokens=80, seed=5, tools=[WEATHER],
                                     tool_choice="required", parallel_tool_calls=False) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert valid_arguments("get_weather", json.loads(call.function.arguments))


def test_openai_auto_answers_with_text_or_calls_without_error(sdk):
    reply = create(sdk, tool_choice="auto")
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls


def test_openai_tool_result_round_trip_is_answered(sdk):
    first = create(sdk, tool_choice="required", parallel_tool_calls=False).choices[0].message
    call = first.tool_calls[0]
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name,
                                                         "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'}]
    reply = sdk.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER, TIME], max_tokens=30,
                                        tool_choice="none", seed=1)
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.choices[0].message.content


@pytest.fixture(scope="module")
def client(live_server):
    return ollama.Client(host=live_server.url, timeout=120)


def test_ollama_chat_with_tools_gives_a_call_or_text_without_error(client):
    for stream in (False, True):
        replies = client.chat(model=MODEL, messages=ASK, tools=[WEATHER, TIME], stream=stream,
                              options={"temperature": 0.7, "seed": 3, "num_predict": 60})
        replies = list(replies) if stream else [replies]
        assert replies[-1].done is True
        content = "".join(r.message.content or "" for r in replies)
        calls = [c for r in replies for c in (r.message.tool_calls or ())]
        assert content or calls
        for call in calls:  # whatever the model called, the arguments arrive as an object
            assert isinstance(call.function.arguments, dict)


def test_ollama_tool_role_round_trip_is_answered(client):
    messages = ASK + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}]},
        {"role": "tool", "tool_name": "get_weather", "content": '{"forecast": "sunny"}'}]
    reply = client.chat(model=MODEL, messages=messages, tools=[WEATHER],
                        options={"temperature": 0, "num_predict": 30})
    assert reply.done is True and (reply.message.content or reply.message.tool_calls)


def test_ollama_show_reports_capabilities_from_the_template(live_server):
    shown = requests.post(live_server.url + "/api/show", json={"model": MODEL}, timeout=60).json()
    # The bundled base model has no template that takes tools: it is not advertised, though /api/chat serves them.
    assert "completion" in shown["capabilities"] and "tools" not in shown["capabilities"]
