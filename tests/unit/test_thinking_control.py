"""Thinking control reaches the chat template: Ollama `think`, OpenAI `reasoning_effort` and `chat_template_kwargs`."""
from __future__ import annotations

from dataclasses import replace

import pytest

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.chat_format import template_variables
from ollama_server.engine.types import CapabilityError
from ollama_server.engine.types import InvalidRequestError
from tests.fakes.backend import FakeBackend
from tests.fakes.backend import FakeModel

TURNS = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
# Qwen3's switch: an empty think block when enable_thinking is false.
QWEN3 = (TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
         "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
# A template that thinks (it knows <think>) but has no switch, opening the block itself as DeepSeek-R1's does.
OPENS_THINK = TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
# Shows every variable it is given, to check what reaches it.
SHOWS = (TURNS + "[effort={{ reasoning_effort }} thinking={{ enable_thinking }} flag={{ flag }}]"
         "{# <think> #}")


class TemplatedBackend(FakeBackend):
    """The fake back-end whose models carry `template` as their GGUF chat template."""

    template: str | None = None

    def load(self, path: str, options: LoadOptions) -> FakeModel:
        model = super().load(path, options)
        model.facts = replace(model.facts, chat_template=self.template)
        return model


@pytest.fixture
def fake_backend() -> TemplatedBackend:
    return TemplatedBackend()


def prompt(backend: FakeBackend) -> str:
    return "".join(chr(t) for t in backend.history[-1][1])


def chat(client, **fields):
    return client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
                                          "stream": False, **fields})


def openai_chat(client, **fields):
    return client.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
                                                     **fields})


def test_ollama_think_false_reaches_the_template_as_enable_thinking_false(client, fake_backend):
    fake_backend.template = QWEN3
    assert chat(client, think=False).status_code == 200
    assert prompt(fake_backend).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_ollama_think_absent_leaves_the_template_default(client, fake_backend):
    fake_backend.template = QWEN3
    chat(client)
    assert prompt(fake_backend).endswith("<|im_start|>assistant\n")


def test_ollama_think_level_reaches_the_template_as_reasoning_effort(client, fake_backend):
    fake_backend.template = SHOWS
    assert chat(client, think="high").status_code == 200
    assert "[effort=high thinking=True flag=]" in prompt(fake_backend)


def test_ollama_generate_think_false_reaches_the_template(client, fake_backend):
    fake_backend.template = QWEN3
    client.post("/api/generate", json={"model": "tiny", "prompt": "Hi", "think": False, "stream": False})
    assert prompt(fake_backend).endswith("<think>\n\n</think>\n\n")


def test_openai_reasoning_effort_none_turns_thinking_off_in_the_template(client, fake_backend):
    fake_backend.template = QWEN3
    assert openai_chat(client, reasoning_effort="none").status_code == 200
    assert prompt(fake_backend).endswith("<think>\n\n</think>\n\n")


def test_openai_reasoning_effort_level_reaches_the_template(client, fake_backend):
    fake_backend.template = SHOWS
    openai_chat(client, reasoning_effort="low")
    assert "[effort=low thinking=True flag=]" in prompt(fake_backend)


def test_openai_chat_template_kwargs_reach_the_template(client, fake_backend):
    fake_backend.template = SHOWS
    openai_chat(client, chat_template_kwargs={"enable_thinking": False, "flag": "on"})
    assert "[effort= thinking=False flag=on]" in prompt(fake_backend)


def test_chat_template_kwargs_enable_thinking_false_works_as_vllm_users_send_it(client, fake_backend):
    fake_backend.template = QWEN3
    openai_chat(client, chat_template_kwargs={"enable_thinking": False})
    assert prompt(fake_backend).endswith("<think>\n\n</think>\n\n")


def test_think_false_closes_the_block_a_template_without_a_switch_opens(client, fake_backend):
    fake_backend.template = OPENS_THINK
    fake_backend.enqueue("Hello")
    body = chat(client, think=False).get_json()
    assert prompt(fake_backend).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert body["message"]["content"] == "Hello"


def test_thinking_output_is_still_split_when_think_is_true(client, fake_backend):
    fake_backend.template = QWEN3
    fake_backend.enqueue("<think>hmm</think>Hello")
    message = chat(client, think=True).get_json()["message"]
    assert message["thinking"] == "hmm" and message["content"] == "Hello"


def test_ollama_think_true_on_a_model_without_thinking_is_400_naming_the_model(client):
    response = chat(client, think=True)  # the built-in format: no template, no thinking
    assert response.status_code == 400
    assert response.get_json()["error"] == '"tiny:latest" does not support thinking'


def test_ollama_think_false_on_a_model_without_thinking_is_served(client, fake_backend):
    fake_backend.enqueue("Hello")
    response = chat(client, think=False)
    assert response.status_code == 200 and response.get_json()["message"]["content"] == "Hello"


def test_openai_reasoning_effort_high_on_a_model_without_thinking_is_400_naming_the_field(client, fake_backend):
    fake_backend.template = TURNS  # a template without any thinking
    response = openai_chat(client, reasoning_effort="high")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "reasoning_effort" and "does not support thinking" in error["message"]


def test_chat_template_kwargs_without_a_template_are_400_naming_the_field(client):
    response = openai_chat(client, chat_template_kwargs={"flag": 1})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "chat_template_kwargs" and "flag" in error["message"]


def test_chat_template_kwargs_may_not_replace_the_messages(client, fake_backend):
    fake_backend.template = SHOWS
    response = openai_chat(client, chat_template_kwargs={"messages": []})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "chat_template_kwargs"


def test_reasoning_effort_outside_openais_values_is_400_naming_it(client):
    response = openai_chat(client, reasoning_effort="extreme")
    assert response.status_code == 400 and "reasoning_effort" in response.get_json()["error"]["message"]


def test_ollama_think_outside_its_values_is_400_naming_it(client):
    response = chat(client, think="lots")
    assert response.status_code == 400 and "think" in response.get_json()["error"]


def test_template_variables_map_levels_and_let_explicit_kwargs_win():
    assert template_variables(SHOWS, "medium") == {"enable_thinking": True, "reasoning_effort": "medium"}
    assert template_variables(SHOWS, "low", extra={"enable_thinking": False}) == {
        "enable_thinking": False, "reasoning_effort": "low"}
    assert template_variables(None, False) == {"enable_thinking": False}
    with pytest.raises(CapabilityError):
        template_variables(TURNS, True)
    with pytest.raises(InvalidRequestError):
        template_variables(SHOWS, None, extra={"bos_token": "x"})
