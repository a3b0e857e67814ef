"""Ollama tool calling: `tools` and history `tool_calls` to engine values, parsed calls to `message.tool_calls`."""
from __future__ import annotations

import json
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall


def _bad(field: str, message: str) -> ApiError:
    return ApiError("invalid_request", f"{field}: {message}", param=field)


def parse_tools(raw: Optional[list[dict]]) -> tuple[Tool, ...]:
    """The request's tools ({"type": "function", "function": {name, description, parameters}})."""
    tools = []
    for index, item in enumerate(raw or ()):
        field = f"tools[{index}]"
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            raise _bad(f"{field}.type", "only function tools are supported")
        function = item.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise _bad(f"{field}.function.name", "is required")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad(f"{field}.function.parameters", "must be a JSON schema object")
        description = function.get("description") or ""
        tools.append(Tool(name=name, description=description if isinstance(description, str) else "",
                          parameters=parameters))
    return tuple(tools)


def history_calls(raw: Optional[list[dict]], index: int) -> tuple[ToolCall, ...]:
    """An assistant message's tool_calls; Ollama's arguments are an object (a JSON string is accepted too)."""
    calls = []
    for number, item in enumerate(raw or ()):
        field = f"messages[{index}].tool_calls[{number}].function"
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(field, "must be an object with a name and arguments")
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                raise _bad(f"{field}.arguments", "must be a JSON object") from None
        if not isinstance(arguments, dict):
            raise _bad(f"{field}.arguments", "must be a JSON object")
        calls.append(ToolCall(name=function["name"], arguments=json.dumps(arguments), id=str(item.get("id") or "")))
    return tuple(calls)


def calls_json(calls: tuple[ToolCall, ...], first_index: int = 0) -> list[dict]:
    """message.tool_calls as Ollama sends them: arguments as an object, each call whole."""
    return [{"id": call.id, "function": {"index": first_index + number, "name": call.name,
                                         "arguments": json.loads(call.arguments)}}
            for number, call in enumerate(calls)]
