"""Anthropic tool use: tools / tool_choice and tool_use / tool_result blocks to engine values, and the calls the
model made back to `tool_use` content blocks (the engine parses and constrains; this only translates)."""
from __future__ import annotations

import json
import re
import uuid
from typing import Any
from typing import Optional
from typing import Sequence

from ollama_server.api.anthropic.schemas import ContentBlock
from ollama_server.api.anthropic.schemas import MessageParam
from ollama_server.api.anthropic.schemas import ToolChoice
from ollama_server.api.anthropic.schemas import ToolParam
from ollama_server.api.anthropic.schemas import _Prompt
from ollama_server.api.errors import ApiError
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall

_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")  # Anthropic's tool name rule
# Blocks of Anthropic's server-side tools (web search, code execution, MCP connector): nothing here runs them.
SERVER_TOOL_BLOCKS = frozenset({"server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
                                "code_execution_tool_result", "bash_code_execution_tool_result",
                                "text_editor_code_execution_tool_result", "mcp_tool_use", "mcp_tool_result",
                                "tool_search_tool_result", "container_upload"})
ERROR_PREFIX = "Error: "  # an is_error result: the engine's tool turn has no flag, so the text says it


def _bad(field: str, message: str) -> ApiError:
    return ApiError("invalid_request", f"{field}: {message}", param=field)


def new_tool_use_id() -> str:
    """An id in Anthropic's form: toolu_ and 24 characters."""
    return f"toolu_{uuid.uuid4().hex[:24]}"


def _tool(item: ToolParam, index: int, forced: bool) -> Tool:
    at = f"tools.{index}"
    if item.type not in (None, "custom"):
        raise _bad(f"{at}.type", f"server tools ({item.type!r}) are not supported by this server; "
                   "only client tools (input_schema) are")
    for key in item.model_extra or {}:
        raise _bad(f"{at}.{key}", "Extra inputs are not permitted")
    if not _NAME.fullmatch(item.name):
        raise _bad(f"{at}.name", "must be 1 to 128 letters, digits, '_' or '-'")
    if item.input_schema is None:
        raise _bad(f"{at}.input_schema", "Field required")
    if item.input_schema.get("type") != "object":
        raise _bad(f"{at}.input_schema.type", "must be 'object'")
    if item.input_examples is not None:
        raise _bad(f"{at}.input_examples", "not supported by this server")
    if item.defer_loading:
        raise _bad(f"{at}.defer_loading", "tool search is not supported by this server")
    if item.allowed_callers is not None and item.allowed_callers != ["direct"]:
        raise _bad(f"{at}.allowed_callers", "only 'direct' callers are supported (no code execution here)")
    if item.strict and not forced:
        # Only a forced call is generated under the schema's grammar; an `auto` call is parsed, not guaranteed.
        raise _bad(f"{at}.strict", "guaranteed only with tool_choice 'any' or 'tool'")
    return Tool(name=item.name, description=item.description or "", parameters=item.input_schema)


def _choice(choice: Optional[ToolChoice], tools: Sequence[ToolParam]) -> dict:
    """GenerateRequest's tool_choice / tool_name / parallel_tool_calls for Anthropic's tool_choice."""
    if choice is None:
        return {"tool_choice": "auto", "tool_name": None, "parallel_tool_calls": True}
    if choice.type != "tool" and choice.name is not None:
        raise _bad("tool_choice.name", "only allowed when tool_choice.type is 'tool'")
    if choice.type == "none":
        if choice.disable_parallel_tool_use is not None:
            raise _bad("tool_choice.disable_parallel_tool_use", "Extra inputs are not permitted")
        return {"tool_choice": "none", "tool_name": None, "parallel_tool_calls": True}
    if choice.type in ("any", "tool") and not tools:
        raise _bad("tool_choice", f"tool_choice {choice.type!r} needs at least one tool in tools")
    name = None
    if choice.type == "tool":
        if choice.name is None:
            raise _bad("tool_choice.name", "Field required")
        if choice.name not in {tool.name for tool in tools}:
            raise _bad("tool_choice.name", f"no tool named {choice.name!r} in tools")
        name = choice.name
    return {"tool_choice": "auto" if choice.type == "auto" else "required", "tool_name": name,
            "parallel_tool_calls": not choice.disable_parallel_tool_use}


def forces_call(body: _Prompt) -> bool:
    """True when tool_choice is 'any' or 'tool' (generation is then constrained to a call)."""
    return body.tool_choice is not None and body.tool_choice.type in ("any", "tool")


def tool_fields(body: _Prompt) -> dict:
    """GenerateRequest fields for the request's tools and tool_choice."""
    raw = body.tools or []
    tools = tuple(_tool(item, index, forces_call(body)) for index, item in enumerate(raw))
    names = [tool.name for tool in tools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise _bad("tools", f"the tool name {duplicate!r} is given twice")
    return {"tools": tools, **_choice(body.tool_choice, raw)}


def history_call(block: ContentBlock, at: str) -> ToolCall:
    """An assistant turn's tool_use block as the engine's call (arguments as JSON text)."""
    if not isinstance(block.id, str) or not block.id:
        raise _bad(f"{at}.id", "Field required")
    if not isinstance(block.name, str) or not block.name:
        raise _bad(f"{at}.name", "Field required")
    if not isinstance(block.input, dict):
        raise _bad(f"{at}.input", "must be an object")
    return ToolCall(name=block.name, arguments=json.dumps(block.input, ensure_ascii=False), id=block.id)


def _result_text(content: Any, at: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _bad(f"{at}.content", "must be a string or a list of text blocks")
    texts = []
    for number, item in enumerate(content):
        where = f"{at}.content.{number}"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind != "text":
            raise _bad(f"{where}.type", f"{kind!r} blocks in a tool_result are not supported by this server "
                       "(text only)")
        if not isinstance(item.get("text"), str):
            raise _bad(f"{where}.text", "Field required")
        texts.append(item["text"])
    return "\n".join(texts)


def result_message(block: ContentBlock, at: str, names: dict[str, str]) -> Message:
    """A user turn's tool_result block as the engine's tool turn (naming the tool its tool_use called)."""
    if not isinstance(block.tool_use_id, str) or not block.tool_use_id:
        raise _bad(f"{at}.tool_use_id", "Field required")
    if block.tool_use_id not in names:
        raise _bad(f"{at}.tool_use_id", f"no tool_use block with id {block.tool_use_id!r} in an earlier "
                   "assistant message")
    text = _result_text(block.content, at)
    if block.is_error:
        text = ERROR_PREFIX + text
    return Message("tool", text, tool_call_id=block.tool_use_id, name=names[block.tool_use_id])


def _ids(message: MessageParam, kind: str) -> list[str]:
    if isinstance(message.content, str):
        return []
    key = "id" if kind == "tool_use" else "tool_use_id"
    return [getattr(block, key) for block in message.content if block.type == kind]


def check_results_follow(messages: Sequence[MessageParam]) -> None:
    """Every tool_use must be answered by a tool_result in the very next (user) message, as Anthropic demands."""
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        pending = _ids(message, "tool_use")
        if not pending:
            continue
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = set(_ids(following, "tool_result")) if following and following.role == "user" else set()
        missing = [i for i in pending if i not in answered]
        if missing:
            at = f"messages.{index + 1}" if following is not None else f"messages.{index}"
            raise _bad(at, "tool_use ids were found without tool_result blocks immediately after: "
                       + ", ".join(map(str, missing)))


def tool_use_block(call: ToolCall) -> dict:
    """One call the model made as a tool_use content block (input is the arguments object)."""
    return {"type": "tool_use", "id": new_tool_use_id(), "name": call.name, "input": json.loads(call.arguments)}
