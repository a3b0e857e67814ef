"""Turns chat messages into a prompt: the GGUF's own template (sandboxed) or a family default."""
from __future__ import annotations

import json
import re
from typing import Any
from typing import Mapping
from typing import Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ollama_server.engine.types import CapabilityError
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.models.inspect import template_capabilities


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


_TOOLS_VARIABLE = re.compile(r"\btools\b")
TOOLS_PROMPT = (
    "You may call functions to answer. The functions, as JSON schemas:\n<tools>\n{tools}\n</tools>\n"
    "To call a function, reply with one block per call, each exactly in this format:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <arguments-object>}}\n</tool_call>'
)


def template_takes_tools(template: str | None) -> bool:
    """True when a Jinja chat template reads the `tools` variable (else tools go in a system message)."""
    return bool(template) and bool(_TOOLS_VARIABLE.search(template or ""))


def tool_json(tool: Tool) -> dict:
    """A tool in the shape chat templates expect (OpenAI's function tool)."""
    function: dict = {"name": tool.name, "description": tool.description}
    function["parameters"] = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _arguments(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _template_message(message: Message) -> dict:
    """A message for a tools-aware template: tool calls with object arguments, tool turns with their id."""
    out: dict = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                             for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def tools_in_text(messages: Sequence[Message], tools: Sequence[Tool]) -> list[Message]:
    """For a template without tools: the tools described in the system message, calls and results as text."""
    out = []
    for m in messages:
        if m.tool_calls:
            blocks = "\n".join(f'<tool_call>\n{{"name": {json.dumps(c.name)}, "arguments": {c.arguments}}}\n'
                               f"</tool_call>" for c in m.tool_calls)
            out.append(Message(m.role, f"{m.content}\n{blocks}" if m.content else blocks))
        elif m.role == "tool":  # few templates know a tool role: the result comes back as a user turn
            out.append(Message("user", f"<tool_response>\n{m.content}\n</tool_response>"))
        else:
            out.append(Message(m.role, m.content))
    if tools:
        described = TOOLS_PROMPT.format(tools="\n".join(json.dumps(tool_json(t)) for t in tools))
        if out and out[0].role in ("system", "developer"):
            out[0] = Message(out[0].role, f"{out[0].content}\n\n{described}")
        else:
            out.insert(0, Message("system", described))
    return out


def render_chat(messages: Sequence[Message], *, template: str | None, architecture: str,
                bos_token: str = "", eos_token: str = "", tools: Sequence[Tool] = (),
                think: bool | str | None = None, think_field: str = "think",
                template_vars: Mapping[str, Any] | None = None) -> str:
    """The prompt text for `messages` (and the tools offered), ending where the assistant's answer begins."""
    if not messages:
        raise InvalidRequestError("messages must not be empty", param="messages")
    variables = template_variables(template, think, think_field, template_vars)
    with_tools = template_takes_tools(template)
    if not with_tools and (tools or any(m.tool_calls or m.role == "tool" for m in messages)):
        messages = tools_in_text(messages, tools)
    if template:
        extra = {"tools": [tool_json(t) for t in tools]} if with_tools and tools else {}
        try:
            compiled = _JINJA.from_string(template)
            return prefill_thinking(compiled.render(
                messages=[_template_message(m) for m in messages],
                add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token, **extra, **variables,
            ), template, variables)
        except TemplateError as exc:
            raise InvalidRequestError(f"the model's chat template failed: {exc}", param="messages") from None
    if architecture.startswith("gemma"):
        return gemma_turns(messages)
    return chatml_turns(messages)


# --- thinking control -------------------------------------------------------------------------------
# Set by render_chat itself: chat_template_kwargs may not replace them.
RESERVED_VARIABLES = ("messages", "add_generation_prompt", "bos_token", "eos_token", "tools", "raise_exception")
THINK_OFF = "<think>\n\n</think>\n\n"  # the empty block Qwen3's own template writes for enable_thinking=false
KWARGS_FIELD = "chat_template_kwargs"


def template_thinks(template: str | None) -> bool:
    """True when a chat template can think: /api/show's `thinking` capability, or a reasoning_effort switch."""
    return bool(template) and ("thinking" in template_capabilities(template) or "reasoning_effort" in template)


def template_variables(template: str | None, think: bool | str | None, think_field: str = "think",
                       extra: Mapping[str, Any] | None = None) -> dict:
    """The template's thinking variables (enable_thinking, reasoning_effort) plus the caller's own."""
    variables: dict = {}
    if think is not None:
        variables["enable_thinking"] = think is not False
        if isinstance(think, str):
            variables["reasoning_effort"] = think
    extra = dict(extra or {})
    clash = sorted(key for key in extra if key in RESERVED_VARIABLES)
    if clash:
        raise InvalidRequestError(f"{KWARGS_FIELD}: {', '.join(clash)} is set by the server and cannot be "
                                  f"given here", param=KWARGS_FIELD)
    variables.update(extra)  # an explicit kwarg wins over the field it would contradict (vLLM's order)
    if variables.get("enable_thinking") and not template_thinks(template):
        raise CapabilityError("thinking", param=KWARGS_FIELD if "enable_thinking" in extra else think_field)
    if not template:
        # The built-in Gemma and ChatML formats take no variables; enable_thinking=false is already honoured.
        unused = sorted(key for key in extra if not (key == "enable_thinking" and not extra[key]))
        if unused:
            raise InvalidRequestError(f"{KWARGS_FIELD}: the model has no chat template to take "
                                      f"{', '.join(unused)}", param=KWARGS_FIELD)
    return variables


def prefill_thinking(text: str, template: str | None, variables: Mapping[str, Any]) -> str:
    """The prompt with an empty <think> block when thinking is off but the template has no switch for it."""
    if (variables.get("enable_thinking") is not False or not template or "enable_thinking" in template
            or "<think>" not in template):
        return text  # no request to stop thinking, or the template honours enable_thinking itself
    if text.rstrip().endswith("<think>"):  # the template opened the block (DeepSeek-R1 style): close it at once
        return text.rstrip() + "\n\n</think>\n\n"
    return text + THINK_OFF
