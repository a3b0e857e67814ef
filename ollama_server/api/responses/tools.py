"""Responses function tools: tools / tool_choice / parallel_tool_calls / max_tool_calls and function_call items
to engine values, and the engine's parsed calls back to function_call output items."""
from __future__ import annotations

import json
import re
from typing import Any
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
CHOICES = ("none", "auto", "required")


def _bad(field: str, message: str) -> ApiError:
    return ApiError("invalid_request", f"{field}: {message}", param=field)


def _tool(item: Any, index: int) -> Tool:
    field = f"tools.{index}"
    if not isinstance(item, dict):
        raise _bad(field, "must be a function tool object")
    kind = item.get("type")
    if kind != "function":
        # Built-in tools (web_search, file_search, computer, mcp, ...) run on OpenAI's side: nothing here runs them.
        raise _bad(f"{field}.type", f"built-in tool {kind!r} is not supported by this server (function tools only)")
    extra = sorted(set(item) - TOOL_KEYS)
    if extra:
        raise _bad(f"{field}.{extra[0]}", "not supported by this server")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(f"{field}.name", "must be 1 to 64 letters, digits, '_' or '-'")
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad(f"{field}.parameters", "must be a JSON schema object")
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        raise _bad(f"{field}.description", "must be a string")
    if item.get("strict") is not None and not isinstance(item["strict"], bool):
        raise _bad(f"{field}.strict", "must be a boolean")
    return Tool(name=name, description=description or "", parameters=parameters)


def parse_tools(raw: Optional[list]) -> tuple[Tool, ...]:
    """The request's function tools, each with a valid name and an object schema; names unique."""
    tools = tuple(_tool(item, index) for index, item in enumerate(raw or ()))
    names = [tool.name for tool in tools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise _bad("tools", f"the function name {duplicate!r} is given twice")
    return tools


def _known(name: Any, tools: tuple[Tool, ...], field: str) -> str:
    if not isinstance(name, str):
        raise _bad(field, "must be the name of a function in tools")
    if name not in {tool.name for tool in tools}:
        raise _bad(field, f"no tool named {name!r} in tools")
    return name


def _allowed(value: dict, tools: tuple[Tool, ...]) -> tuple[tuple[Tool, ...], str]:
    """allowed_tools: the subset of tools the model may use, and auto or required over it."""
    mode = value.get("mode")
    if mode not in ("auto", "required"):
        raise _bad("tool_choice.mode", "must be 'auto' or 'required'")
    listed = value.get("tools")
    if not isinstance(listed, list) or not listed:
        raise _bad("tool_choice.tools", "must be a non-empty list of {\"type\": \"function\", \"name\": ...}")
    names = set()
    for index, entry in enumerate(listed):
        if not isinstance(entry, dict) or entry.get("type") != "function":
            raise _bad(f"tool_choice.tools.{index}", "only function tools are supported")
        names.add(_known(entry.get("name"), tools, f"tool_choice.tools.{index}.name"))
    return tuple(tool for tool in tools if tool.name in names), mode


def tool_fields(body: ResponsesRequest) -> dict:
    """GenerateRequest fields (tools, tool_choice, tool_name, parallel_tool_calls) for the request's tools."""
    tools = parse_tools(body.tools)
    value, name = body.tool_choice, None
    if value is None:
        choice = "auto"
    elif isinstance(value, str):
        if value not in CHOICES:
            raise _bad("tool_choice", "must be 'none', 'auto', 'required' or a function object")
        choice = value
    elif value.get("type") == "function":
        choice, name = "required", _known(value.get("name"), tools, "tool_choice.name")
    elif value.get("type") == "allowed_tools":
        tools, choice = _allowed(value, tools)
    else:
        raise _bad("tool_choice.type", f"{value.get('type')!r} is not supported by this server "
                                       "(none, auto, required, function or allowed_tools)")
    if choice == "required" and not tools:
        raise _bad("tool_choice", "'required' needs at least one function tool in tools")
    limit = body.max_tool_calls
    if limit is not None and limit < 1:
        raise _bad("max_tool_calls", "must be at least 1")
    # One call allowed: the engine keeps (and a forced grammar writes) a single call.
    parallel = body.parallel_tool_calls is not False and (limit is None or limit > 1)
    return {"tools": tools, "tool_choice": choice, "tool_name": name, "parallel_tool_calls": parallel}


def tools_json(body: ResponsesRequest) -> list[dict]:
    """The tools as the Response echoes them."""
    return [{"type": "function", "name": t["name"], "description": t.get("description"),
             "parameters": t.get("parameters"), "strict": t.get("strict")} for t in body.tools or ()]


def _string(item: dict, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"{where}.{key}", "Field required (a non-empty string)")
    return value


def call_turn(item: dict, where: str) -> ToolCall:
    """A function_call input item (an earlier call of the model) as the engine's ToolCall."""
    arguments = _string(item, "arguments", where)
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad(f"{where}.arguments", "must be a JSON object encoded as a string")
    return ToolCall(name=_string(item, "name", where), arguments=arguments, id=_string(item, "call_id", where))


def output_turn(item: dict, where: str, calls: dict[str, str]) -> Message:
    """A function_call_output input item as a tool turn answering the call it names."""
    call_id = _string(item, "call_id", where)
    if call_id not in calls:
        raise _bad(f"{where}.call_id", f"no function_call with call_id {call_id!r} earlier in the conversation")
    output = item.get("output")
    if isinstance(output, list):  # content parts: text only
        texts = []
        for number, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") != "input_text" or not isinstance(part.get("text"), str):
                raise _bad(f"{where}.output.{number}", "only input_text parts are supported")
            texts.append(part["text"])
        output = "".join(texts)
    if not isinstance(output, str):
        raise _bad(f"{where}.output", "must be a string or a list of input_text parts")
    return Message("tool", output, tool_call_id=call_id, name=calls[call_id])


def call_item(call: ToolCall, item_id: str, status: str, arguments: Optional[str] = None) -> dict:
    """A function_call output item (arguments "" in the streamed item's first form)."""
    return {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": status}


def calls_of(response: dict) -> tuple[ToolCall, ...]:
    """The function calls of a Response's output (what a later turn sees as the assistant's calls)."""
    return tuple(ToolCall(name=item["name"], arguments=item["arguments"], id=item["call_id"])
                 for item in response["output"] if item["type"] == "function_call")
