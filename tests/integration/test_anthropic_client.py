"""The official anthropic SDK against the real server and the real Gemma model."""
from __future__ import annotations

import json

import anthropic
import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.model
MODEL = "gemma3:270m"
# This SDK version has no temperature argument; the API field still exists and goes through extra_body.
GREEDY = {"temperature": 0.0}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CITIES = ["Paris", "Rome", "Oslo"]
WEATHER = {"name": "get_weather", "description": "The weather forecast for a city",
           "input_schema": {"type": "object", "additionalProperties": False, "required": ["city", "days"],
                            "properties": {"city": {"enum": CITIES}, "days": {"type": "integer"}}}}
ASK = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]
FORCED = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}


def follows_schema(arguments: dict) -> bool:
    """WEATHER's input_schema checked by hand (jsonschema is not a dependency)."""
    return (set(arguments) == {"city", "days"} and arguments["city"] in CITIES
            and isinstance(arguments["days"], int) and not isinstance(arguments["days"], bool))


@pytest.fixture(scope="module")
def sdk(live_server):
    return anthropic.Anthropic(base_url=live_server.url, api_key="not-needed", max_retries=0, timeout=120)


def test_create_gives_a_real_answer_in_a_message(sdk):
    message = sdk.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=QUESTION)
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    # Gemma 3 270M is a small base model: the contract is a real, non-empty answer, not its accuracy.
    assert any(ch.isalpha() for ch in message.content[0].text)
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 24
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 5


def test_the_stream_gives_text_and_a_final_message_equal_to_create(sdk):
    kwargs = dict(model=MODEL, max_tokens=20, extra_body=GREEDY, system="Answer in one sentence.", messages=QUESTION)
    with sdk.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    created = sdk.messages.create(**kwargs)
    assert created.content[0].text == final.content[0].text  # temperature 0: the same reply either way


def test_count_tokens_is_the_input_a_message_is_charged(sdk):
    kwargs = dict(model=MODEL, system="Be brief.", messages=QUESTION)
    counted = sdk.messages.count_tokens(**kwargs)
    message = sdk.messages.create(max_tokens=4, extra_body=GREEDY, **kwargs)
    assert counted.input_tokens > 5
    assert counted.input_tokens == message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


def test_a_small_max_tokens_stops_with_max_tokens(sdk):
    message = sdk.messages.create(model=MODEL, max_tokens=3, extra_body=GREEDY, messages=[
        {"role": "user", "content": "Write a long story about a dragon."}])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_a_stop_sequence_ends_the_reply_and_is_named(sdk):
    prompt = [{"role": "user", "content": "Count from 1 to 20 separated by commas: 1, 2, 3,"}]
    free = sdk.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=prompt).content[0].text
    # The model's own continuation picks the stop sequence, so the test does not guess what it writes.
    stop = next(ch for ch in free if ch.isdigit())
    message = sdk.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=prompt, stop_sequences=[stop])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == stop
    assert message.content[0].text == free[:free.index(stop)]


def test_a_bad_request_raises_bad_request_error_naming_the_field(sdk):
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(model=MODEL, max_tokens=8, messages=QUESTION,
                            tools=[{"name": "weather", "input_schema": {"type": "array"}}])
    assert caught.value.status_code == 400
    assert caught.value.body["error"] == {"type": "invalid_request_error",
                                          "message": "tools.0.input_schema.type: must be 'object'"}
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        sdk.messages.create(model=MODEL, max_tokens=8, messages=QUESTION, extra_body={"temperature": 1.5})


def test_an_unknown_model_raises_not_found(sdk):
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-not-here", max_tokens=8, messages=QUESTION)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """A server of our own that requires an API key."""
    workdir = tmp_path_factory.mktemp("anthropic-key")
    with LiveServer(workdir, {"default_context_size": 512, "parallel_slots": 1, "api_key": "s3cret-key"}) as server:
        yield server


def test_the_key_works_as_x_api_key_and_as_bearer_and_a_wrong_one_is_refused(keyed_server):
    as_header = anthropic.Anthropic(base_url=keyed_server.url, api_key=None, auth_token=None, max_retries=0,
                                    timeout=120, default_headers={"x-api-key": "s3cret-key"})
    assert as_header.messages.count_tokens(model=MODEL, messages=QUESTION).input_tokens > 5
    as_key = anthropic.Anthropic(base_url=keyed_server.url, api_key="s3cret-key", max_retries=0, timeout=120)
    assert as_key.messages.create(model=MODEL, max_tokens=2, messages=QUESTION).usage.output_tokens > 0
    wrong = anthropic.Anthropic(base_url=keyed_server.url, api_key=None, auth_token=None, max_retries=0,
                                timeout=120, default_headers={"x-api-key": "wrong"})
    with pytest.raises(anthropic.AuthenticationError) as caught:
        wrong.messages.create(model=MODEL, max_tokens=2, messages=QUESTION)
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_a_forced_tool_gives_a_tool_use_block_whose_input_follows_the_schema_and_its_result_an_answer(sdk):
    asked = sdk.messages.create(model=MODEL, max_tokens=80, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                tool_choice=FORCED)
    assert asked.stop_reason == "tool_use"
    [use] = asked.content
    assert use.type == "tool_use" and use.id.startswith("toolu_") and use.name == "get_weather"
    assert follows_schema(use.input)
    history = ASK + [{"role": "assistant", "content": [use.model_dump(include={"type", "id", "name", "input"})]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                   "content": json.dumps({"forecast": "sunny, 18 C"})}]}]
    answer = sdk.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=history, tools=[WEATHER])
    # Offered with auto, a base model may call again: either way the round trip is served and well-formed.
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use") and answer.content
    if answer.stop_reason != "tool_use":
        assert [block.type for block in answer.content] == ["text"] and answer.content[0].text.strip()


def test_a_streamed_forced_tool_ends_in_a_final_message_with_the_tool_use_block(sdk):
    with sdk.messages.stream(model=MODEL, max_tokens=80, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                             tool_choice=FORCED) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    [use] = final.content
    assert use.type == "tool_use" and use.name == "get_weather" and follows_schema(use.input)
    created = sdk.messages.create(model=MODEL, max_tokens=80, extra_body=GREEDY, messages=ASK, tools=[WEATHER],
                                  tool_choice=FORCED)
    assert created.content[0].input == use.input  # temperature 0: the same call either way


def test_count_tokens_counts_the_tools(sdk):
    plain = sdk.messages.count_tokens(model=MODEL, messages=ASK).input_tokens
    assert sdk.messages.count_tokens(model=MODEL, messages=ASK, tools=[WEATHER]).input_tokens > plain + 10
