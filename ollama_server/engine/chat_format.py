"""Turns chat messages into a prompt: the GGUF's own template (sandboxed) or a family default."""
from __future__ import annotations

from typing import Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import Message


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


# Sandboxed because a GGUF's template is untrusted input (CVE-2024-34359).
_JINJA = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_JINJA.globals["raise_exception"] = _raise_exception


def gemma_turns(messages: Sequence[Message]) -> str:
    """Gemma's turn format; Gemma has no system role, so system text leads the first user turn."""
    system = "\n\n".join(m.content for m in messages if m.role in ("system", "developer"))
    parts = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        role = "model" if message.role == "assistant" else "user"
        content = message.content
        if system and role == "user":
            content, system = f"{system}\n\n{content}", ""
        parts.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
    if system:  # only system messages were given
        parts.append(f"<start_of_turn>user\n{system}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return "".join(parts)


def chatml_turns(messages: Sequence[Message]) -> str:
    """ChatML, the most common format, for models without a template of their own."""
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def render_chat(messages: Sequence[Message], *, template: str | None, architecture: str,
                bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text for `messages`, ending where the assistant's answer begins."""
    if not messages:
        raise InvalidRequestError("messages must not be empty", param="messages")
    if template:
        try:
            compiled = _JINJA.from_string(template)
            return compiled.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token,
            )
        except TemplateError as exc:
            raise InvalidRequestError(f"the model's chat template failed: {exc}", param="messages") from None
    if architecture.startswith("gemma"):
        return gemma_turns(messages)
    return chatml_turns(messages)
