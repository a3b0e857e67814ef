"""OpenAI tool calling: tools / tool_choice / parallel_tool_calls and history tool calls to engine values, and
parsed calls back to `message.tool_calls` and streamed `delta.tool_calls`."""
from __future__ import annotations

import json
import re
from typing import Any
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _bad(field: str, message: str) -> ApiError:
    return ApiError("invalid_request", f"{field}: {message}", param=field)


def parse_tools(raw: Optional[list[dict]]) -> tuple[Tool, ...]:
    """The request's `tools`: function tools only, each with a valid name and an object schema."""
    tools = []
    for index, item in enumerate(raw or ()):
        field = f"tools[{index}]"
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            kind = item.get("type") if isinstance(item, dict) else type(item).__name__
            raise _bad(f"{field}.type", f"only function tools are supported, not {kind!r}")
        function = item.get("function")
        if not isinstance(function, dict):
            raise _bad(f"{field}.function", "must be an object with a name")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _bad(f"{field}.function.name", "must be 1 to 64 letters, digits, '_', '-', '.' or ':'")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad(f"{field}.function.parameters", "must be a JSON schema object")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise _bad(f"{field}.function.description", "must be a string")
        tools.append(Tool(name=name, description=description, parameters=parameters))
    names = [tool.name for tool in tools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise _bad("tools", f"the function name {duplicate!r} is given twice")
    return tuple(tools)


def tool_choice(value: Any, tools: tuple[Tool, ...]) -> tuple[str, Optional[str]]:
    """(engine tool_choice, forced tool name) for OpenAI's none / auto / required / {"type": "function", ...}."""
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise _bad("tool_choice", "must be 'none', 'auto', 'required' or a function object")
        if value == "required" and not tools:
            raise _bad("tool_choice", "'required' needs at least one tool in tools")
        return value, None
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise _bad("tool_choice", 'a named choice is {"type": "function", "function": {"name": ...}}')
    if name not in {tool.name for tool in tools}:
        raise _bad("tool_choice", f"no tool named {name!r} in tools")
    return "required", name


def history_calls(raw: Optional[list[dict]], index: int) -> tuple[ToolCall, ...]:
    """An assistant message's tool_calls (arguments must be a JSON string of an object)."""
    calls = []
    for number, item in enumerate(raw or ()):
        field = f"messages[{index}].tool_calls[{number}]"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"{field}.function", "must be an object with a name and arguments")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, dict):  # lenient: some clients send the object itself
            arguments = json.dumps(arguments)
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _bad(f"{field}.function.arguments", "must be a JSON object encoded as a string")
        calls.append(ToolCall(name=function["name"], arguments=arguments, id=str(item.get("id") or "")))
    return tuple(calls)


def tool_fields(body: ChatCompletionRequest) -> dict:
    """GenerateRequest fields for the request's tools; the legacy functions API is refused, never ignored."""
    if body.functions is not None:
        raise _bad("functions", "the deprecated functions API is not supported; send tools instead")
    if body.function_call is not None:
        raise _bad("function_call", "the deprecated functions API is not supported; send tool_choice instead")
    tools = parse_tools(body.tools)
    choice, name = tool_choice(body.tool_choice, tools)
    return {"tools": tools, "tool_choice": choice, "tool_name": name,
            "parallel_tool_calls": body.parallel_tool_calls is not False}


def call_json(call: ToolCall) -> dict:
    """One entry of message.tool_calls."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def call_deltas(call: ToolCall, index: int) -> list[dict]:
    """The streamed delta.tool_calls entries of one call: its id and name first, then its arguments."""
    return [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}},
            {"index": index, "function": {"arguments": call.arguments}}]
