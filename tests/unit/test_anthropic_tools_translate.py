"""Anthropic tool use <-> engine values (pure): tools, tool_choice, tool_use / tool_result history, tool_use blocks."""
from __future__ import annotations

import pytest

from ollama_server.api.anthropic import translate as tr
from ollama_server.api.anthropic.schemas import CountTokensRequest
from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.errors import ApiError
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"name": "get_weather", "description": "Weather of a city", "input_schema": SCHEMA}
TIME = {"name": "get_time", "input_schema": {"type": "object"}}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
ASKED = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [USE]}]


def body(**fields) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "tiny", "max_tokens": 64,
                                           "messages": [{"role": "user", "content": "Hi"}], **fields})


def request_of(**fields):
    return tr.from_messages_request(body(**fields), "/v1/messages")[0]


def test_tools_become_engine_tools_with_the_input_schema_as_parameters_offered_with_auto():
    request = request_of(tools=[WEATHER, TIME])
    assert request.tools == (Tool("get_weather", "Weather of a city", SCHEMA), Tool("get_time", "", {"type": "object"}))
    assert (request.tool_choice, request.tool_name, request.parallel_tool_calls) == ("auto", None, True)


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, ("auto", None, True)),
    ({"type": "auto", "disable_parallel_tool_use": True}, ("auto", None, False)),
    ({"type": "any"}, ("required", None, True)),
    ({"type": "any", "disable_parallel_tool_use": True}, ("required", None, False)),
    ({"type": "tool", "name": "get_time"}, ("required", "get_time", True)),
    ({"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}, ("required", "get_time", False)),
    ({"type": "none"}, ("none", None, True))])
def test_tool_choice_maps_any_to_required_and_tool_to_a_named_call(choice, expected):
    request = request_of(tools=[WEATHER, TIME], tool_choice=choice)
    assert (request.tool_choice, request.tool_name, request.parallel_tool_calls) == expected


def test_a_tool_use_and_its_tool_result_become_an_assistant_call_and_a_tool_turn():
    request = request_of(tools=[WEATHER], messages=ASKED + [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C, sunny"},
        {"type": "text", "text": "Thanks, and?"}]}])
    assert request.messages == (
        Message("user", "Weather in Paris?"),
        Message("assistant", "", (ToolCall("get_weather", '{"city": "Paris"}', "toolu_1"),)),
        Message("tool", "18 C, sunny", tool_call_id="toolu_1", name="get_weather"),
        Message("user", "Thanks, and?"))


def test_assistant_text_and_several_tool_uses_are_one_turn_and_each_result_its_own_tool_turn():
    second = {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}
    request = request_of(tools=[WEATHER, TIME], messages=[
        {"role": "user", "content": "Both?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, USE, second]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "12:00"}]},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                {"type": "text", "text": "no"}, {"type": "text", "text": "data"}], "is_error": True}]}])
    assert request.messages[1] == Message("assistant", "Checking.", (
        ToolCall("get_weather", '{"city": "Paris"}', "toolu_1"), ToolCall("get_time", "{}", "toolu_2")))
    assert request.messages[2:] == (Message("tool", "12:00", tool_call_id="toolu_2", name="get_time"),
                                    Message("tool", "Error: no\ndata", tool_call_id="toolu_1", name="get_weather"))


def test_a_count_request_carries_the_tools_so_they_are_counted_in_the_prompt():
    count = CountTokensRequest.model_validate({"model": "tiny", "tools": [WEATHER], "tool_choice": {"type": "any"},
                                               "messages": [{"role": "user", "content": "Hi"}]})
    request = tr.from_count_request(count, "/v1/messages/count_tokens")
    assert request.tools == (Tool("get_weather", "Weather of a city", SCHEMA),) and request.tool_choice == "required"


@pytest.mark.parametrize("fields, param", [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ({"tools": [{"name": "bad name!", "input_schema": SCHEMA}]}, "tools.0.name"),
    ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ({"tools": [{"name": "f", "input_schema": {"type": "array"}}]}, "tools.0.input_schema.type"),
    ({"tools": [{"name": "f", "input_schema": SCHEMA, "max_uses": 3}]}, "tools.0.max_uses"),
    ({"tools": [{"name": "f", "input_schema": SCHEMA, "input_examples": [{}]}]}, "tools.0.input_examples"),
    ({"tools": [{"name": "f", "input_schema": SCHEMA, "strict": True}]}, "tools.0.strict"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tool_choice": {"type": "any"}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "auto", "name": "get_weather"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "none", "disable_parallel_tool_use": True}},
     "tool_choice.disable_parallel_tool_use"),
    ({"tools": [WEATHER], "tool_choice": {"type": "any"}, "max_tokens": 2048,
      "thinking": {"type": "enabled", "budget_tokens": 1024}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [USE]}]}, "messages.0.content.0"),
    ({"messages": ASKED}, "messages.1"),
    ({"messages": ASKED + [{"role": "user", "content": "no result"}]}, "messages.2"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}]},
     "messages.0.content.0.tool_use_id"),
    ({"messages": ASKED + [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                           "content": [{"type": "image", "source": {}}]}]}]},
     "messages.2.content.0.content.0.type"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": "Paris"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]}, "messages.1.content.0.input"),
    ({"messages": [{"role": "user", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search",
                                                  "input": {}}]}]}, "messages.0.content.0"),
])
def test_tool_use_that_cannot_be_served_is_a_400_naming_the_field(fields, param):
    with pytest.raises(ApiError) as caught:
        tr.from_messages_request(body(**fields), "/v1/messages")
    assert caught.value.kind == "invalid_request" and caught.value.param == param
    assert caught.value.message.startswith(param + ": ")


def test_strict_is_accepted_when_the_call_is_forced_by_grammar():
    request = request_of(tools=[{**WEATHER, "strict": True}], tool_choice={"type": "any"})
    assert request.tool_choice == "required"


def test_calls_in_a_result_become_tool_use_blocks_with_toolu_ids_and_stop_reason_tool_use():
    result = GenerateResult("tiny:latest", "Let me check.", (), "stop", "eos", Usage(prompt_tokens=9),
                            tool_calls=(ToolCall("get_weather", '{"city": "Paris"}', "call_x"),))
    message = tr.to_message(result, "msg_1", show_thinking=False)
    text, use = message["content"]
    assert text == {"type": "text", "text": "Let me check."}
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_") and len(use["id"]) == len("toolu_") + 24
    assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None


def test_a_reply_that_is_only_calls_has_no_empty_text_block_and_max_tokens_wins_over_tool_use():
    calls = (ToolCall("get_time", "{}", "call_y"),)
    assert [b["type"] for b in tr.content_blocks("", "", False, calls)] == ["tool_use"]
    assert tr.stop_reason("length", "length", None, called_tools=True) == ("max_tokens", None)
