"""The official openai SDK's Responses API against the real server and the real Gemma model."""
from __future__ import annotations

import json

import openai
import pytest

pytestmark = pytest.mark.model
MODEL = "gemma3:270m"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def sdk(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_create_gives_a_non_empty_output_text(sdk):
    response = sdk.responses.create(model=MODEL, input=QUESTION, max_output_tokens=24, temperature=0.0)
    assert response.id.startswith("resp_") and response.object == "response" and response.model == MODEL
    assert response.status in ("completed", "incomplete")
    # Gemma 3 270M is a small base model: the contract is a real, non-empty answer, not its accuracy.
    assert isinstance(response.output_text, str) and response.output_text.strip()
    assert 0 < response.usage.output_tokens <= 24
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_the_stream_sends_the_events_in_order_and_a_final_response_equal_to_create(sdk):
    kwargs = dict(model=MODEL, input=QUESTION, instructions="Answer in one sentence.", max_output_tokens=20,
                  temperature=0.0)
    events = list(sdk.responses.create(stream=True, **kwargs))
    types = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    # A small base model may well run into max_output_tokens: then the last event is response.incomplete.
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert set(types[4:-4]) == {"response.output_text.delta"} and len(deltas) > 1
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response
    assert "".join(deltas) == final.output_text and final.usage.output_tokens > 0
    created = sdk.responses.create(**kwargs)
    assert created.output_text == final.output_text  # temperature 0: the same reply either way


def test_the_stream_helper_gives_the_final_response_of_a_reply_that_ends(sdk):
    # A grammar with a bounded string forces the reply to end, so the stream ends with response.completed.
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
              "required": ["city"], "additionalProperties": False}
    with sdk.responses.stream(model=MODEL, input=QUESTION, max_output_tokens=64, temperature=0.0, text={
            "format": {"type": "json_schema", "name": "answer", "schema": schema}}) as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and "".join(texts) == final.output_text
    assert set(json.loads(final.output_text)) == {"city"}


def test_previous_response_id_continues_the_conversation(sdk):
    first = sdk.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=16, temperature=0.0)
    second = sdk.responses.create(model=MODEL, input="What is my name?", previous_response_id=first.id,
                                  max_output_tokens=16, temperature=0.0)
    alone = sdk.responses.create(model=MODEL, input="What is my name?", max_output_tokens=16, temperature=0.0)
    assert second.previous_response_id == first.id and second.output_text.strip()
    # The earlier turn and its answer are part of the second prompt.
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    assert sdk.responses.retrieve(second.id).output_text == second.output_text
    sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=MODEL, input="again", previous_response_id=first.id)


def test_a_json_schema_format_forces_json_that_validates(sdk):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"], "additionalProperties": False}
    response = sdk.responses.create(model=MODEL, input=QUESTION, max_output_tokens=64, temperature=0.0,
                                    text={"format": {"type": "json_schema", "name": "answer", "schema": schema}})
    value = json.loads(response.output_text)
    assert set(value) == {"city"} and isinstance(value["city"], str)


WEATHER = {"type": "function", "name": "get_weather", "description": "The weather forecast for a city",
           "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "days"],
                          "properties": {"city": {"enum": ["Paris", "Rome", "Oslo"]}, "days": {"type": "integer"}}}}
FORCED = dict(model=MODEL, input="What will the weather be in Paris for the next 3 days?", tools=[WEATHER],
              tool_choice={"type": "function", "name": "get_weather"}, parallel_tool_calls=False,
              max_output_tokens=80, temperature=0.0)


def valid_weather(arguments: str) -> bool:
    """The tool's schema checked by hand (jsonschema is not a dependency)."""
    value = json.loads(arguments)
    return (set(value) == {"city", "days"} and value["city"] in ("Paris", "Rome", "Oslo")
            and isinstance(value["days"], int) and not isinstance(value["days"], bool))


def test_a_named_tool_choice_gives_a_function_call_whose_arguments_validate(sdk):
    response = sdk.responses.create(**FORCED)
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.status == "completed" and valid_weather(call.arguments)
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and response.status == "completed"


def test_a_function_call_output_sent_back_gives_a_message(sdk):
    first = sdk.responses.create(**FORCED)
    [call] = [item for item in first.output if item.type == "function_call"]
    second = sdk.responses.create(model=MODEL, previous_response_id=first.id, tools=[WEATHER], max_output_tokens=24,
                                  temperature=0.0, input=[{"type": "function_call_output", "call_id": call.call_id,
                                                           "output": json.dumps({"forecast": "sunny"})}])
    assert second.previous_response_id == first.id and second.output[-1].type == "message"
    # The earlier call and its output are part of the second prompt.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_a_streamed_forced_call_sends_the_function_call_events_in_order(sdk):
    events = list(sdk.responses.create(stream=True, **FORCED))
    types = [event.type for event in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[2].item.type == "function_call" and events[2].item.arguments == ""
    final = events[-1].response
    [call] = final.output
    assert call.type == "function_call" and call.arguments == events[4].arguments and valid_weather(call.arguments)


def test_an_unknown_previous_response_id_is_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model=MODEL, input=QUESTION, previous_response_id="resp_unknown")
    assert caught.value.param == "previous_response_id"
