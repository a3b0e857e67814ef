"""Pure Responses translation: input items (tool calls and outputs included) to chat turns, tools to the engine,
refusals by name, text.format, the Response shape."""
from __future__ import annotations

import pytest
from openai.types.responses import ResponseFunctionToolCall as SdkFunctionCall

from ollama_server.api.errors import ApiError
from ollama_server.api.responses import translate as tr
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage


def body(**fields) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "tiny", **fields})


def refusal(**fields) -> ApiError:
    with pytest.raises(ApiError) as caught:
        tr.from_request(body(**fields), (), "/v1/responses")
    return caught.value


def test_a_string_input_is_one_user_turn_after_the_instructions():
    request, turns = tr.from_request(body(input="Hi", instructions="Be brief."), (), "/v1/responses")
    assert request.messages == (Message("system", "Be brief."), Message("user", "Hi"))
    assert turns == (Message("user", "Hi"),)  # instructions are not carried to a later turn
    assert request.split_thinking and request.dialect == "openai"


def test_message_items_keep_their_roles_with_developer_as_system_and_text_parts_joined():
    items = [{"role": "developer", "content": "Rules."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                            {"type": "input_text", "text": "b"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
             {"type": "reasoning", "id": "rs_1", "summary": []},
             {"role": "user", "content": "d"}]
    _, turns = tr.from_request(body(input=items), (), "/v1/responses")
    assert turns == (Message("system", "Rules."), Message("user", "ab"), Message("assistant", "c"),
                     Message("user", "d"))


def test_the_history_of_a_previous_response_comes_before_the_new_input():
    history = (Message("user", "one"), Message("assistant", "two"))
    request, turns = tr.from_request(body(input="three"), history, "/v1/responses")
    assert turns == history + (Message("user", "three"),)
    assert request.messages == turns


WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def engine_request(**fields):
    return tr.from_request(body(input="x", **fields), (), "/v1/responses")[0]


def test_function_tools_reach_the_engine_with_auto_choice_by_default():
    request = engine_request(tools=[WEATHER, TIME])
    assert request.tools == (Tool("get_weather", "Weather of a city", WEATHER["parameters"]),
                             Tool("get_time", "", TIME["parameters"]))
    assert (request.tool_choice, request.tool_name, request.parallel_tool_calls) == ("auto", None, True)


def test_a_named_function_choice_forces_that_tool():
    request = engine_request(tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"})
    assert (request.tool_choice, request.tool_name) == ("required", "get_time")


def test_allowed_tools_narrows_the_tools_offered_with_its_mode():
    request = engine_request(tools=[WEATHER, TIME], tool_choice={
        "type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]})
    assert [tool.name for tool in request.tools] == ["get_time"] and request.tool_choice == "required"


def test_one_allowed_call_turns_parallel_calls_off_for_the_engine():
    assert not engine_request(tools=[WEATHER], parallel_tool_calls=False).parallel_tool_calls
    assert not engine_request(tools=[WEATHER], max_tool_calls=1).parallel_tool_calls
    assert engine_request(tools=[WEATHER], max_tool_calls=2).parallel_tool_calls


@pytest.mark.parametrize("fields, param", [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"tools": [{"type": "function", "name": "bad name"}]}, "tools.0.name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools.0.parameters"),
    ({"tools": [{"type": "function", "name": "f", "defer_loading": True}]}, "tools.0.defer_loading"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice.type"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "max_tool_calls": 0}, "max_tool_calls"),
])
def test_tools_that_cannot_be_served_are_refused_naming_the_field(fields, param):
    assert refusal(input="x", **fields).param == param


def test_function_call_items_join_the_assistant_turn_and_outputs_answer_them_as_tool_turns():
    items = [{"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": "Checking."},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
             {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
             {"type": "function_call_output", "call_id": "call_2",
              "output": [{"type": "input_text", "text": "noon"}]}]
    _, turns = tr.from_request(body(input=items), (), "/v1/responses")
    assert turns == (Message("user", "Weather?"),
                     Message("assistant", "Checking.", (ToolCall("get_weather", '{"city": "Oslo"}', "call_1"),
                                                        ToolCall("get_time", "{}", "call_2"))),
                     Message("tool", "sunny", tool_call_id="call_1", name="get_weather"),
                     Message("tool", "noon", tool_call_id="call_2", name="get_time"))


def test_a_function_call_output_may_answer_a_call_of_the_previous_response():
    history = (Message("user", "a"), Message("assistant", "", (ToolCall("f", "{}", "call_9"),)))
    items = [{"type": "function_call_output", "call_id": "call_9", "output": "42"}]
    _, turns = tr.from_request(body(input=items), history, "/v1/responses")
    assert turns[-1] == Message("tool", "42", tool_call_id="call_9", name="f")


@pytest.mark.parametrize("items, param", [
    ([{"type": "function_call_output", "call_id": "call_x", "output": "1"}], "input.0.call_id"),
    ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}], "input.0.arguments"),
    ([{"type": "function_call", "call_id": "c", "arguments": "{}"}], "input.0.name"),
    ([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image"}]}], "input.1.output.0"),
    ([{"type": "web_search_call", "id": "ws_1"}], "input.0.type"),
])
def test_bad_tool_items_are_refused_naming_their_place(items, param):
    assert refusal(input=items).param == param


def test_a_result_that_only_called_has_function_call_items_and_no_message():
    calls = (ToolCall("get_weather", '{"city": "Oslo"}', "call_1"), ToolCall("get_time", "{}", "call_2"))
    result = GenerateResult("tiny:latest", "\n", (), "stop", "eos", Usage(5, 3), tool_calls=calls)
    payload = tr.to_response(body(input="x", tools=[WEATHER, TIME]), result, "resp_1", 100, "msg_1", "rs_1")
    items = [SdkFunctionCall.model_validate(item) for item in payload["output"]]
    assert [(i.name, i.arguments, i.call_id, i.status) for i in items] == [
        ("get_weather", '{"city": "Oslo"}', "call_1", "completed"), ("get_time", "{}", "call_2", "completed")]
    assert all(item.id.startswith("fc_") for item in items)
    assert tr.assistant_turn(payload) == Message("assistant", "", calls)
    assert payload["tools"][0] == {**WEATHER}


def test_max_tool_calls_keeps_only_that_many_calls():
    calls = tuple(ToolCall("get_time", "{}", f"call_{n}") for n in range(3))
    result = GenerateResult("tiny:latest", "", (), "stop", "eos", Usage(5, 3), tool_calls=calls)
    payload = tr.to_response(body(input="x", tools=[TIME], max_tool_calls=2), result, "resp_1", 1, "m", "r")
    assert [item["call_id"] for item in payload["output"]] == ["call_0", "call_1"]
    assert payload["max_tool_calls"] == 2


def test_an_image_part_is_refused_naming_its_place():
    items = [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]
    assert refusal(input=items).param == "input.0.content.0"


def test_an_unknown_role_is_refused_naming_the_item():
    assert refusal(input=[{"role": "tool", "content": "x"}]).param == "input.0.role"


@pytest.mark.parametrize("field, value", [("background", True), ("conversation", "conv_1"),
                                          ("prompt", {"id": "p"}), ("top_logprobs", 3),
                                          ("truncation", "auto"), ("include", ["message.output_text.logprobs"])])
def test_fields_this_server_cannot_honour_are_refused_by_name(field, value):
    assert refusal(input="x", **{field: value}).param.startswith(field)


def test_a_missing_input_without_a_previous_response_is_refused_naming_input():
    assert refusal().param == "input"


def test_a_json_schema_text_format_becomes_the_engines_json_schema_constraint():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request, _ = tr.from_request(body(input="x", text={"format": {"type": "json_schema", "name": "s",
                                                                  "schema": schema}}), (), "/v1/responses")
    assert request.sampling.json_schema == schema and request.sampling.schema_field == "text.format"


def test_json_object_format_is_any_json_and_an_unknown_format_is_refused():
    request, _ = tr.from_request(body(input="x", text={"format": {"type": "json_object"}}), (), "/v1/responses")
    assert request.sampling.json_schema == {}
    assert refusal(input="x", text={"format": {"type": "grammar"}}).param == "text.format"


def test_max_output_tokens_and_sampling_reach_the_engine():
    request, _ = tr.from_request(body(input="x", max_output_tokens=7, temperature=0.1, top_p=0.5), (), "")
    assert request.max_tokens == 7 and not request.cap_to_context
    assert request.sampling.temperature == 0.1 and request.sampling.top_p == 0.5


def test_reasoning_effort_reaches_the_template_as_think_and_none_turns_thinking_off():
    low, _ = tr.from_request(body(input="x", reasoning={"effort": "low"}), (), "")
    off, _ = tr.from_request(body(input="x", reasoning={"effort": "none"}), (), "")
    unset, _ = tr.from_request(body(input="x"), (), "")
    assert (low.think, off.think, unset.think) == ("low", False, None)
    assert low.think_field == "reasoning.effort"


def test_a_result_that_thought_has_a_reasoning_item_before_the_message():
    result = GenerateResult("tiny:latest", "42", (), "stop", "eos", Usage(5, 3), reasoning="hmm")
    payload = tr.to_response(body(input="x"), result, "resp_1", 100, "msg_1", "rs_1")
    assert [item["type"] for item in payload["output"]] == ["reasoning", "message"]
    assert payload["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert payload["status"] == "completed" and tr.output_text(payload) == "42"
    assert payload["usage"]["total_tokens"] == 8


def test_a_result_cut_at_max_output_tokens_is_incomplete():
    result = GenerateResult("tiny:latest", "abc", (), "length", "length", Usage(5, 3))
    payload = tr.to_response(body(input="x"), result, "resp_1", 100, "msg_1", "rs_1")
    assert payload["status"] == "incomplete"
    assert payload["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payload["output"][0]["status"] == "incomplete"
