"""vLLM extras through the official openai SDK (extra_body) and plain HTTP, on the real model."""
import openai
import pytest
import requests

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def sdk(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def test_ignore_eos_and_min_tokens_fill_max_tokens(sdk):
    reply = sdk.completions.create(model="gemma3:270m", prompt="Hi", max_tokens=6, temperature=0,
                                   extra_body={"ignore_eos": True, "min_tokens": 6, "top_k": 20,
                                               "repetition_penalty": 1.1, "min_p": 0.0})
    assert reply.usage.completion_tokens == 6
    assert reply.choices[0].finish_reason == "length"


def test_n_choices_with_logprobs(sdk):
    reply = sdk.completions.create(model="gemma3:270m", prompt="The sky is", max_tokens=3, temperature=0.7, seed=3,
                                   n=2, logprobs=2)
    assert [c.index for c in reply.choices] == [0, 1]
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    assert all(lp <= 0.0 for lp in logprobs.token_logprobs)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)


def test_greedy_logprob_is_the_top_alternative(sdk):
    reply = sdk.chat.completions.create(model="gemma3:270m", messages=[{"role": "user", "content": "Say hi"}],
                                        max_tokens=3, temperature=0, logprobs=True, top_logprobs=3)
    for entry in reply.choices[0].logprobs.content:
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def test_stop_token_ids_are_honoured(sdk, live_server):
    free = sdk.completions.create(model="gemma3:270m", prompt="The capital of France is", max_tokens=6, temperature=0)
    first_token = requests.post(live_server.url + "/tokenize", timeout=60, json={
        "prompt": free.choices[0].text, "add_special_tokens": False}).json()["tokens"][0]
    stopped = sdk.completions.create(model="gemma3:270m", prompt="The capital of France is", max_tokens=6,
                                     temperature=0, extra_body={"stop_token_ids": [first_token]})
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].model_extra["stop_reason"] == first_token
    assert stopped.usage.completion_tokens == 1


def test_models_report_max_model_len(sdk):
    model = sdk.models.retrieve("gemma3:270m")
    assert model.model_extra["max_model_len"] == 1024
    assert model.model_extra["root"].endswith(".gguf")


def test_tokenize_detokenize_round_trip(live_server):
    body = requests.post(live_server.url + "/tokenize", json={"prompt": "Hello world"}, timeout=60).json()
    assert body["count"] == len(body["tokens"]) and body["max_model_len"] == 1024
    text = requests.post(live_server.url + "/detokenize", json={"tokens": body["tokens"]}, timeout=60).json()
    assert "Hello world" in text["prompt"]


def test_version_and_bad_tokenize(live_server):
    assert requests.get(live_server.url + "/version", timeout=10).json()["version"]
    response = requests.post(live_server.url + "/detokenize", json={"tokens": [10**9]}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400
