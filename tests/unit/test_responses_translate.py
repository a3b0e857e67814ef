"""Pure Responses translation: input items to chat turns, refusals by name, text.format, the Response shape."""
from __future__ import annotations

import pytest

from ollama_server.api.errors import ApiError
from ollama_server.api.responses import translate as tr
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
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


def test_function_tools_are_refused_naming_tools():
    error = refusal(input="x", tools=[{"type": "function", "name": "f", "parameters": {}}])
    assert error.param == "tools" and "function tools are not supported on /v1/responses yet" in error.message


def test_built_in_tools_are_refused_naming_tools():
    assert refusal(input="x", tools=[{"type": "web_search"}]).param == "tools"


def test_a_function_call_output_item_is_refused_naming_tools():
    items = [{"type": "function_call_output", "call_id": "c", "output": "42"}]
    error = refusal(input=items)
    assert error.param == "tools" and error.message.startswith("input.0: function_call_output items")


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
