"""The official openai SDK against the real server and the real Gemma model."""
import json

import openai
import pytest
import requests

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def sdk(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_chat_gives_a_non_empty_answer(sdk):
    reply = sdk.chat.completions.create(model="gemma3:270m", temperature=0, max_tokens=24,
                                        messages=[{"role": "user", "content": "What is the capital of France?"}])
    text = reply.choices[0].message.content
    # Gemma 3 270M is a small base model: the contract is a real, non-empty answer, not its accuracy.
    assert any(ch.isalpha() for ch in text)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 24


def test_no_model_named_uses_the_default(sdk, live_server):
    body = requests.post(live_server.url + "/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}).json()
    assert body["model"] == "gemma3:270m"
    assert body["choices"][0]["message"]["content"].strip()


def test_temperature_zero_is_deterministic(sdk):
    def ask():
        return sdk.completions.create(model="gemma3:270m", prompt="The three primary colours are",
                                      temperature=0, max_tokens=12).choices[0].text
    assert ask() == ask()


def test_same_seed_gives_the_same_sample(sdk):
    def ask():
        return sdk.completions.create(model="gemma3:270m", prompt="Once upon a time", temperature=1.0,
                                      seed=1234, max_tokens=12).choices[0].text
    assert ask() == ask()


def test_completion_stops_at_max_tokens_with_length(sdk):
    reply = sdk.completions.create(model="gemma3:270m", prompt="Count: 1, 2, 3,", temperature=0, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_a_stop_string_is_honoured(sdk):
    reply = sdk.completions.create(model="gemma3:270m", prompt="Count: 1, 2, 3, 4,", temperature=0,
                                   max_tokens=30, stop=["7"])
    assert "7" not in reply.choices[0].text
    assert reply.choices[0].finish_reason == "stop"


def test_streamed_chat_equals_the_non_streamed_one(sdk):
    messages = [{"role": "user", "content": "Name a fruit."}]
    whole = sdk.chat.completions.create(model="gemma3:270m", messages=messages, temperature=0, max_tokens=16)
    stream = sdk.chat.completions.create(model="gemma3:270m", messages=messages, temperature=0, max_tokens=16,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streamed_completion_yields_text(sdk):
    pieces = [c.choices[0].text for c in sdk.completions.create(
        model="gemma3:270m", prompt="The sky is", max_tokens=8, temperature=0, stream=True)]
    assert "".join(pieces).strip()


def test_models_are_listed_and_retrievable(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert "gemma3:270m" in ids
    assert sdk.models.retrieve("gemma3:270m").id == "gemma3:270m"


def test_unknown_model_raises_not_found(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])


def test_a_prompt_longer_than_the_context_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(model="gemma3:270m", prompt="word " * 2000, max_tokens=4)
    assert "1024" in caught.value.message


def test_max_tokens_below_one_is_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "x"}], max_tokens=0)


def test_wrong_types_are_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gemma3:270m", messages="not a list")


def test_malformed_json_is_400_and_the_server_lives_on(live_server):
    response = requests.post(live_server.url + "/v1/chat/completions", data=b"{nope",
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert requests.get(live_server.url + "/health", timeout=10).status_code == 200


def test_an_oversized_body_is_413(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "x" * 70000}])
    assert caught.value.status_code == 413


def test_health_reports_components(live_server):
    body = requests.get(live_server.url + "/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["components"]["models"]["count"] >= 1
    assert "gemma3:270m" in body["components"]["models"]["loaded"]
    assert "active_requests" in body


def test_a_streamed_completion_with_n_2_streams_both_choices(live_server):
    """The second choice is submitted mid-stream, inside the request's context."""
    body = {"prompt": "1, 2, 3,", "max_tokens": 3, "temperature": 0, "n": 2, "stream": True}
    with requests.post(live_server.url + "/v1/completions", json=body, stream=True, timeout=60) as response:
        lines = response.iter_lines()
        events = [line for line in lines if line.startswith(b"data:")]
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert "error" not in chunks[-1]
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1}
