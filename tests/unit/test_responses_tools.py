"""Function tools on /v1/responses over the scripted back-end: function_call output items, the streamed
function_call events, forced calls by grammar, function_call_output round trips and the 400s."""
from __future__ import annotations

import json

import pytest
from openai.types.responses import Response as SdkResponse

from tests.unit.test_responses_api import EVENTS
from tests.unit.test_responses_api import events_of

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TIME_CALL = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
CALL_EVENTS = ["response.output_item.added", "response.function_call_arguments.delta",
               "response.function_call_arguments.done", "response.output_item.done"]


@pytest.fixture
def client(make_app):
    # The fake tokenizer is one token per character: the tools' description needs more than 256.
    return make_app(default_context_size=4096).test_client()


def create(client, **fields):
    return client.post("/v1/responses", json={"model": "tiny", "input": "Weather in Paris?", **fields})


def prompt_of(fake_backend) -> str:
    return "".join(chr(t) for t in fake_backend.history[-1][1])


def test_a_call_in_the_output_becomes_a_function_call_item_and_no_message(client, fake_backend):
    fake_backend.enqueue(CALL)
    payload = create(client, tools=[WEATHER]).get_json()
    parsed = SdkResponse.model_validate(payload)
    [item] = parsed.output
    assert item.type == "function_call" and item.name == "get_weather" and item.status == "completed"
    assert json.loads(item.arguments) == {"city": "Paris"}
    assert item.id.startswith("fc_") and item.call_id.startswith("call_")
    assert parsed.status == "completed" and parsed.tools[0].name == "get_weather" and parsed.tool_choice == "auto"
    assert '"name": "get_weather"' in prompt_of(fake_backend)  # offered through the prompt
    assert fake_backend.grammars[-1] is None  # auto: not forced


def test_a_reply_without_a_call_stays_a_message(client, fake_backend):
    fake_backend.enqueue("It is sunny.")
    parsed = SdkResponse.model_validate(create(client, tools=[WEATHER]).get_json())
    assert [item.type for item in parsed.output] == ["message"] and parsed.output_text == "It is sunny."


def test_a_named_choice_without_parallel_calls_constrains_generation_to_one_call_of_that_tool(client, fake_backend):
    fake_backend.enqueue(TIME_CALL)
    payload = create(client, tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_time"},
                     parallel_tool_calls=False).get_json()
    assert [item["name"] for item in payload["output"]] == ["get_time"]
    grammar = fake_backend.grammars[-1]
    assert grammar.startswith('root ::= "<tool_call>\\n" tool-call-object "\\n</tool_call>"\n')
    assert "get_time" in grammar and "get_weather" not in grammar
    assert payload["tool_choice"] == {"type": "function", "name": "get_time"}


def test_required_with_parallel_calls_allows_several_calls_in_the_grammar(client, fake_backend):
    fake_backend.enqueue(CALL + "\n" + TIME_CALL)
    payload = create(client, tools=[WEATHER, TIME], tool_choice="required").get_json()
    assert [item["name"] for item in payload["output"]] == ["get_weather", "get_time"]
    grammar = fake_backend.grammars[-1]
    assert grammar.startswith('root ::= "<tool_call>\\n" tool-call-object "\\n</tool_call>" ("\\n" "<tool_call>')
    assert "get_time" in grammar and "get_weather" in grammar


def test_parallel_tool_calls_false_and_max_tool_calls_cut_the_calls(client, fake_backend):
    fake_backend.enqueue(CALL + TIME_CALL)
    one = create(client, tools=[WEATHER, TIME], parallel_tool_calls=False).get_json()
    assert [item["name"] for item in one["output"]] == ["get_weather"] and one["parallel_tool_calls"] is False
    fake_backend.enqueue(CALL + TIME_CALL + CALL)
    two = create(client, tools=[WEATHER, TIME], max_tool_calls=2, stream=True).get_data(as_text=True)
    final = events_of(two)[-1]["response"]
    assert [item["name"] for item in final["output"]] == ["get_weather", "get_time"]


def test_tool_choice_none_neither_offers_nor_parses(client, fake_backend):
    fake_backend.enqueue(CALL)
    parsed = SdkResponse.model_validate(create(client, tools=[WEATHER], tool_choice="none").get_json())
    assert parsed.output_text == CALL and "get_weather" not in prompt_of(fake_backend)


def test_a_streamed_call_sends_the_function_call_events_then_completed(client, fake_backend):
    fake_backend.enqueue(CALL)
    events = events_of(create(client, tools=[WEATHER], stream=True).get_data(as_text=True))
    for event in events:
        EVENTS.validate_python(event)  # every event is one openai-python knows
    types = [event["type"] for event in events]
    assert types == ["response.created", "response.in_progress"] + CALL_EVENTS + ["response.completed"]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    added, delta, done, item_done = events[2:6]
    assert added["item"]["arguments"] == "" and added["item"]["status"] == "in_progress"
    assert added["item"]["type"] == "function_call" and added["item"]["name"] == "get_weather"
    assert delta["item_id"] == done["item_id"] == item_done["item"]["id"] == added["item"]["id"]
    assert json.loads(delta["delta"]) == json.loads(done["arguments"]) == {"city": "Paris"}
    final = SdkResponse.model_validate(events[-1]["response"])
    assert final.output[0].model_dump(exclude_none=True) == item_done["item"]


def test_text_before_a_streamed_call_is_its_own_message_item_first(client, fake_backend):
    fake_backend.enqueue("Let me check. " + CALL)
    events = events_of(create(client, tools=[WEATHER], stream=True).get_data(as_text=True))
    done = [(e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.done"]
    assert done == [(0, "message"), (1, "function_call")]
    final = SdkResponse.model_validate(events[-1]["response"])
    assert final.output_text == "Let me check. " and final.output[1].name == "get_weather"


def test_a_call_output_sent_back_with_previous_response_id_reaches_the_model_after_its_call(client, fake_backend):
    fake_backend.enqueue(CALL)
    first = create(client, tools=[WEATHER]).get_json()
    call = first["output"][0]
    fake_backend.enqueue("Sunny in Paris.")
    second = create(client, tools=[WEATHER], previous_response_id=first["id"], input=[
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "clear"}'}]).get_json()
    assert SdkResponse.model_validate(second).output_text == "Sunny in Paris."
    prompt = prompt_of(fake_backend)
    made = prompt.index('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    assert made < prompt.index('<tool_response>\n{"sky": "clear"}\n</tool_response>')


def test_a_streamed_call_can_be_answered_through_previous_response_id(client, fake_backend):
    fake_backend.enqueue(CALL)
    final = events_of(create(client, tools=[WEATHER], stream=True).get_data(as_text=True))[-1]["response"]
    fake_backend.enqueue("ok")
    reply = create(client, tools=[WEATHER], previous_response_id=final["id"], input=[
        {"type": "function_call_output", "call_id": final["output"][0]["call_id"], "output": "rain"}])
    assert reply.status_code == 200 and "<tool_response>\nrain\n</tool_response>" in prompt_of(fake_backend)


def test_a_call_output_answering_no_call_is_a_400_naming_its_call_id(client, fake_backend):
    reply = create(client, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}])
    assert reply.status_code == 400
    error = reply.get_json()["error"]
    assert error["param"] == "input.0.call_id" and "call_unknown" in error["message"]
    assert fake_backend.history == []


def test_built_in_tools_are_a_400_naming_the_tool_and_reach_no_model(client, fake_backend):
    reply = create(client, tools=[WEATHER, {"type": "web_search"}])
    assert reply.status_code == 400
    error = reply.get_json()["error"]
    assert error["param"] == "tools.1.type" and "web_search" in error["message"]
    assert error["type"] == "invalid_request_error" and fake_backend.history == []
