"""Chat prompts: the Gemma turn format, GGUF templates in a sandbox."""
import pytest

from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import Message


def test_gemma_turns_fold_the_system_prompt_into_the_first_user_turn():
    prompt = render_chat([Message("system", "Be brief."), Message("user", "Hi"),
                          Message("assistant", "Hello"), Message("user", "Capital of France?")],
                         template=None, architecture="gemma3")
    assert prompt == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                      "<start_of_turn>model\nHello<end_of_turn>\n"
                      "<start_of_turn>user\nCapital of France?<end_of_turn>\n"
                      "<start_of_turn>model\n")


def test_a_gguf_template_is_rendered_with_the_generation_prompt():
    template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    assert render_chat([Message("user", "hi")], template=template, architecture="llama") == "[user]hi[assistant]"


def test_a_malicious_template_cannot_reach_python_internals():
    template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InvalidRequestError):
        render_chat([Message("user", "hi")], template=template, architecture="llama")


def test_a_template_that_raises_gives_an_invalid_request():
    template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        render_chat([Message("user", "hi")], template=template, architecture="llama")


def test_other_families_fall_back_to_chatml():
    prompt = render_chat([Message("user", "hi")], template=None, architecture="qwen2")
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_empty_messages_are_rejected():
    with pytest.raises(InvalidRequestError):
        render_chat([], template=None, architecture="gemma3")
