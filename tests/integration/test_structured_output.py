"""Constrained output on the real model through the official clients: openai (vLLM's guided_* extras and
structured_outputs) and huggingface_hub (TGI's regex grammar)."""
from __future__ import annotations

import json
import re

import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError

pytestmark = pytest.mark.model
MODEL = "gemma3:270m"
CHOICES = ["red", "green", "blue"]
PATTERN = r"[0-9]{3}-[a-z]{2}"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["ok", "color"],
          "properties": {"ok": {"type": "boolean"}, "color": {"enum": CHOICES}}}


@pytest.fixture(scope="module")
def sdk(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def chat(sdk, content: str, **extra):
    return sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}],
                                       max_tokens=60, temperature=0.8, seed=7, extra_body=extra)


def follows_schema(value) -> bool:
    """SCHEMA checked by hand (jsonschema is not a dependency)."""
    return (isinstance(value, dict) and set(value) == {"ok", "color"} and isinstance(value["ok"], bool)
            and value["color"] in CHOICES)


def test_guided_choice_answers_one_of_the_choices(sdk):
    reply = chat(sdk, "Name a colour.", guided_choice=CHOICES)
    assert reply.choices[0].message.content in CHOICES
    assert reply.choices[0].finish_reason == "stop"


def test_guided_regex_answers_a_full_match(sdk):
    reply = chat(sdk, "Write a code.", guided_regex=PATTERN)
    assert re.fullmatch(PATTERN, reply.choices[0].message.content)


def test_guided_regex_streamed_answers_a_full_match(sdk):
    stream = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Write a code."}],
                                         max_tokens=60, stream=True, extra_body={"guided_regex": PATTERN})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert re.fullmatch(PATTERN, text)


def test_guided_json_answers_json_that_follows_the_schema(sdk):
    reply = chat(sdk, "Describe the sky as JSON.", guided_json=SCHEMA)
    assert follows_schema(json.loads(reply.choices[0].message.content))


def test_structured_outputs_choice_on_completions(sdk):
    reply = sdk.completions.create(model=MODEL, prompt="My favourite colour is", max_tokens=10,
                                   extra_body={"structured_outputs": {"choice": CHOICES}})
    assert reply.choices[0].text in CHOICES


def test_a_regex_outside_the_subset_is_a_400_naming_the_field_and_construct(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, "x", guided_regex=r"(\w+) \1")
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == "guided_regex"
    assert "backreference" in error["message"]


def test_two_constraints_at_once_are_a_400(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, "x", guided_choice=CHOICES, guided_regex=PATTERN)
    assert "guided_regex and guided_choice" in caught.value.body["message"]


def test_tgi_regex_grammar_through_inference_client(live_server):
    hf = InferenceClient(base_url=live_server.url, timeout=120)
    text = hf.text_generation("Write a code:", max_new_tokens=20, grammar={"type": "regex", "value": PATTERN})
    assert re.fullmatch(PATTERN, text)


def test_tgi_refuses_a_regex_outside_the_subset_as_validation_error(live_server):
    hf = InferenceClient(base_url=live_server.url, timeout=120)
    with pytest.raises(ValidationError, match="lookahead"):
        hf.text_generation("x", max_new_tokens=5, grammar={"type": "regex", "value": "(?=a)a"})
