"""Pure OpenAI Responses <-> engine translation: a request body to a GenerateRequest, a result to a Response."""
from __future__ import annotations

import time
import uuid
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.responses import tools as tool_api
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage

DIALECT = "openai"
# Request fields OpenAI has and this server cannot serve: refused by name, never ignored.
UNSUPPORTED_FIELDS = ("top_logprobs", "background", "background_options", "conversation", "prompt",
                      "context_management", "moderation", "image", "access_programs", "prompt_cache_options")
# include values we can honour: reasoning is returned as plain text, so there is nothing to encrypt.
INCLUDABLE = frozenset({"reasoning.encrypted_content"})
# Items of built-in (server-side) tools: nothing here ran them, so they cannot be part of a conversation.
BUILT_IN_ITEMS = frozenset({"custom_tool_call", "custom_tool_call_output",
                        "web_search_call", "file_search_call", "computer_call", "computer_call_output",
                        "code_interpreter_call", "image_generation_call", "local_shell_call",
                        "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
                        "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
                        "mcp_approval_response", "tool_search_call", "tool_search_output"})
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = {"user": ("input_text",), "system": ("input_text",), "developer": ("input_text",),
              "assistant": ("output_text", "input_text", "refusal")}


def new_id(prefix: str) -> str:
    """An id in OpenAI's form: resp_, msg_, rs_ or fc_ and 32 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def _bad(message: str, param: Optional[str]) -> ApiError:
    return ApiError("invalid_request", message, param=param)


def refuse_unsupported(body: ResponsesRequest) -> None:
    """A 400 naming the first field this server cannot honour."""
    for name in UNSUPPORTED_FIELDS:
        if getattr(body, name) not in (None, 0, False):
            raise _bad(f"{name}: not supported by this server", name)
    if body.truncation == "auto":
        raise _bad("truncation: 'auto' is not supported (input that does not fit the context is refused)",
                   "truncation")
    if body.text is not None and body.text.verbosity not in (None, "medium"):
        raise _bad("text.verbosity: only 'medium' is supported (the model's own length)", "text.verbosity")
    if body.reasoning is not None:
        for name in ("context", "mode"):
            if getattr(body.reasoning, name) is not None:
                raise _bad(f"reasoning.{name}: not supported by this server", f"reasoning.{name}")
    for number, value in enumerate(body.include or ()):
        if value not in INCLUDABLE:
            raise _bad(f"include.{number}: {value!r} is not supported by this server", f"include.{number}")
    if body.stream_options is not None:
        if not body.stream:
            raise _bad("stream_options: only allowed when stream is true", "stream_options")
        if body.stream_options.include_obfuscation:
            raise _bad("stream_options.include_obfuscation: not supported (events are not padded)",
                       "stream_options.include_obfuscation")


def _content_text(content: object, role: str, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}: must be a string or a list of content parts", where)
    texts = []
    for number, part in enumerate(content):
        at = f"{where}.{number}"
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(kind, str) and kind in TEXT_PARTS[role]:
            key = "refusal" if kind == "refusal" else "text"
            if not isinstance(part.get(key), str):
                raise _bad(f"{at}.{key}: Field required (a string)", f"{at}.{key}")
            texts.append(part[key])
        else:
            raise _bad(f"{at}: {kind!r} content is not supported here (text only: "
                       f"{', '.join(TEXT_PARTS[role])})", at)
    return "".join(texts)


def _item_message(item: dict, index: int, calls: dict[str, str]) -> Optional[Message | ToolCall]:
    """The chat turn (or earlier call) of one input item; None for a past reasoning item, which the context drops."""
    where = f"input.{index}"
    kind = item.get("type", "message")
    if not isinstance(kind, str):
        raise _bad(f"{where}.type: must be a string", f"{where}.type")
    if kind == "function_call":
        return tool_api.call_turn(item, where)
    if kind == "function_call_output":
        return tool_api.output_turn(item, where, calls)
    if kind in BUILT_IN_ITEMS:
        raise _bad(f"{where}: {kind} items (built-in tools) are not supported by this server", f"{where}.type")
    if kind == "reasoning":
        return None
    if kind != "message":
        raise _bad(f"{where}: {kind!r} items are not supported by this server", f"{where}.type")
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise _bad(f"{where}.role: must be one of user, assistant, system, developer", f"{where}.role")
    if "content" not in item:
        raise _bad(f"{where}.content: Field required", f"{where}.content")
    return Message(ROLES[role], _content_text(item["content"], role, f"{where}.content"))


def input_messages(body: ResponsesRequest, history: tuple[Message, ...] = ()) -> tuple[Message, ...]:
    """The request's own input as chat turns (developer is system; instructions are not included).

    function_call items join the assistant turn before them (one turn, several calls, as chat templates
    expect); a function_call_output must answer a call made earlier, in `history` or in this input.
    """
    if body.input is None:
        return ()
    if isinstance(body.input, str):
        return (Message("user", body.input),)
    calls = {call.id: call.name for turn in history for call in turn.tool_calls}
    turns: list[Message] = []
    for index, item in enumerate(body.input):
        made = _item_message(item, index, calls)
        if isinstance(made, ToolCall):
            calls[made.id] = made.name
            if turns and turns[-1].role == "assistant":
                last = turns.pop()
                made = Message("assistant", last.content, last.tool_calls + (made,))
            else:
                made = Message("assistant", "", (made,))
        if made is not None:
            turns.append(made)
    return tuple(turns)


def constraint_of(body: ResponsesRequest) -> dict:
    """SamplingParams fields for text.format: json_schema and json_object through the structured-output path."""
    fmt = body.text.format if body.text is not None else None
    if not fmt or fmt.get("type") == "text":
        return {}
    kind = fmt.get("type")
    if kind == "json_object":
        return {"json_schema": {}, "schema_field": "text.format"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("text.format.schema: must be a JSON schema object", "text.format.schema")
        return {"json_schema": schema, "schema_field": "text.format"}
    raise _bad(f"text.format: unsupported type {kind!r} (text, json_object or json_schema)", "text.format")


def sampling_from(body: ResponsesRequest) -> SamplingParams:
    """temperature/top_p over the engine's defaults, and the text.format constraint."""
    defaults = SamplingParams()
    return SamplingParams(temperature=defaults.temperature if body.temperature is None else body.temperature,
                          top_p=defaults.top_p if body.top_p is None else body.top_p, **constraint_of(body))


def think_of(body: ResponsesRequest) -> bool | str | None:
    """reasoning.effort for the chat template: "none" asks for no thinking, a level for thinking at it."""
    effort = body.reasoning.effort if body.reasoning is not None else None
    if effort is None:
        return None
    return False if effort == "none" else effort


def from_request(body: ResponsesRequest, history: tuple[Message, ...], endpoint: str,
                 default_max_tokens: int = 0) -> tuple[GenerateRequest, tuple[Message, ...]]:
    """The engine request, and the conversation so far (earlier turns + this input) a later response continues."""
    refuse_unsupported(body)
    if body.input is None and body.previous_response_id is None:
        raise _bad("input: Field required (a string or a list of input items)", "input")
    tool_fields = tool_api.tool_fields(body)
    turns = history + input_messages(body, history)
    head = (Message("system", body.instructions),) if body.instructions else ()
    if not turns and not head:
        raise _bad("input: must not be empty", "input")
    max_tokens = body.max_output_tokens or (default_max_tokens or None)
    request = GenerateRequest(model=body.model or None, messages=head + turns, max_tokens=max_tokens,
                              cap_to_context=body.max_output_tokens is None, split_thinking=True,
                              sampling=sampling_from(body), think=think_of(body), think_field="reasoning.effort",
                              dialect=DIALECT, endpoint=endpoint, **tool_fields)
    return request, turns


def status_of(finish_reason: Optional[str]) -> tuple[str, Optional[dict]]:
    """Engine end -> (status, incomplete_details)."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "cancelled":
        return "cancelled", None
    return "completed", None


def usage_json(usage: Usage) -> dict:
    """OpenAI's usage; reasoning tokens are not counted apart (output_tokens include them), so 0."""
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def reasoning_item(item_id: str, text: str, status: str) -> dict:
    return {"id": item_id, "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": text}],
            "encrypted_content": None, "status": status}


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: Optional[str], status: str) -> dict:
    """The assistant message item (no content yet when text is None: the streamed item's first form)."""
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [] if text is None else [text_part(text)]}


def call_limit(body: ResponsesRequest) -> Optional[int]:
    """How many function calls a response may carry (max_tool_calls; 1 without parallel_tool_calls)."""
    return 1 if body.parallel_tool_calls is False else body.max_tool_calls


def output_items(result: GenerateResult, message_id: str, reasoning_id: str,
                 max_calls: Optional[int] = None) -> list[dict]:
    """A reasoning item when the model thought, the message (left out when the model only called), the calls."""
    status = "incomplete" if result.finish_reason == "length" else "completed"
    items = [reasoning_item(reasoning_id, result.reasoning, status)] if result.reasoning else []
    calls = result.tool_calls[:max_calls] if max_calls is not None else result.tool_calls
    if result.text.strip() or not calls:
        items.append(message_item(message_id, result.text, status))
    return items + [tool_api.call_item(call, new_id("fc"), "completed") for call in calls]


def response_json(body: ResponsesRequest, response_id: str, created: int, model: str, status: str,
                  output: list[dict], usage: Optional[Usage], incomplete: Optional[dict] = None,
                  error: Optional[dict] = None) -> dict:
    """A Response object (also the one the lifecycle events carry)."""
    defaults = SamplingParams()
    fmt = (body.text.format if body.text is not None else None) or {"type": "text"}
    reasoning = body.reasoning
    return {
        "id": response_id, "object": "response", "created_at": created, "status": status,
        "completed_at": now() if status == "completed" else None, "error": error,
        "incomplete_details": incomplete, "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens, "model": model, "output": output,
        "parallel_tool_calls": body.parallel_tool_calls is not False, "max_tool_calls": body.max_tool_calls,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": reasoning.effort if reasoning else None,
                      "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None},
        "store": body.store is not False,
        "temperature": defaults.temperature if body.temperature is None else body.temperature,
        "text": {"format": fmt, "verbosity": "medium"},
        "tool_choice": "auto" if body.tool_choice is None else body.tool_choice, "tools": tool_api.tools_json(body),
        "top_p": defaults.top_p if body.top_p is None else body.top_p, "truncation": "disabled",
        "background": False,
        "usage": None if usage is None else usage_json(usage), "user": body.user,
        "metadata": body.metadata or {}, "service_tier": "default", "safety_identifier": body.safety_identifier,
        "prompt_cache_key": body.prompt_cache_key,
    }


def to_response(body: ResponsesRequest, result: GenerateResult, response_id: str, created: int,
                message_id: str, reasoning_id: str) -> dict:
    """The non-streaming answer."""
    status, incomplete = status_of(result.finish_reason)
    return response_json(body, response_id, created, result.model, status,
                         output_items(result, message_id, reasoning_id, call_limit(body)), result.usage, incomplete)


def output_text(response: dict) -> str:
    """The text of a Response's message items (what a later turn sees as the assistant's reply)."""
    return "".join(part.get("text", "") for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")


def assistant_turn(response: dict) -> Message:
    """A finished Response as the assistant turn a later response continues: its text and its calls."""
    return Message("assistant", output_text(response), tool_api.calls_of(response))
