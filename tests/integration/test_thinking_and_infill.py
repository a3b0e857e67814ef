"""Thinking control and fill-in-the-middle through the official clients, on the real Gemma 3 270M (no FIM
tokens, no thinking in its format)."""
from __future__ import annotations

import ollama
import openai
import pytest
import requests

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
FAST = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def ollama_client(live_server):
    return ollama.Client(host=live_server.url, timeout=120)


@pytest.fixture(scope="module")
def openai_client(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", timeout=120)


def test_ollama_chat_with_think_false_answers(ollama_client):
    reply = ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": "Say hi."}], think=False,
                               options=FAST)
    assert reply.done is True and reply.message.role == "assistant"
    assert reply.message.thinking is None and reply.eval_count > 0


def test_ollama_chat_with_think_true_is_the_thinking_400(ollama_client):
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], think=True, options=FAST)
    assert caught.value.status_code == 400 and "does not support thinking" in caught.value.error


def test_ollama_generate_with_suffix_is_the_insert_400_naming_the_model(ollama_client):
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.generate(model=MODEL, prompt="def add(a, b):\n", suffix="\n", options=FAST)
    assert caught.value.status_code == 400
    assert f'"{MODEL}' in caught.value.error and "does not support insert" in caught.value.error


def test_openai_completion_with_suffix_is_the_insert_400_naming_the_model(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.completions.create(model=MODEL, prompt="def add(a, b):\n", suffix="\n", max_tokens=8)
    assert caught.value.status_code == 400
    assert MODEL in caught.value.message and "does not support insert" in caught.value.message


def test_openai_reasoning_effort_none_answers(openai_client):
    reply = openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                  reasoning_effort="none", max_tokens=8, temperature=0)
    assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens > 0


def test_openai_reasoning_effort_high_is_the_thinking_400(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                              reasoning_effort="high", max_tokens=8)
    assert "does not support thinking" in caught.value.message


def test_llama_server_infill_is_the_insert_400_in_its_error_shape(live_server):
    response = requests.post(live_server.url + "/infill", timeout=120,
                             json={"model": MODEL, "input_prefix": "def add(a, b):\n", "input_suffix": "\n",
                                   "input_extra": [{"filename": "util.py", "text": "X = 1\n"}], "n_predict": 8})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert f'"{MODEL}' in error["message"] and "does not support insert" in error["message"]
