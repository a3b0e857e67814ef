"""Pure Anthropic Messages <-> engine translation: bodies to GenerateRequests, results to Anthropic JSON."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Optional

from ollama_server.api.anthropic import tools
from ollama_server.api.anthropic.schemas import CountTokensRequest
from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.anthropic.schemas import _Prompt
from ollama_server.api.errors import ApiError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage

DIALECT = "anthropic"
MIN_THINKING_BUDGET = 1024  # Anthropic's own lower bound for thinking.budget_tokens
# Request fields Anthropic has and this server cannot serve: refused by name, never ignored.
UNSUPPORTED_FIELDS = ("mcp_servers", "context_management", "output_format", "output_config", "container",
                      "inference_geo", "speed", "diagnostics", "user_profile_id", "workspace_id")
# Anthropic drops thinking of earlier turns from the context itself; passing them back is normal.
PAST_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
# status -> Anthropic error type (docs: "HTTP errors"); other 4xx are invalid_request_error, other 5xx api_error.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


@dataclass(frozen=True)
class ThinkMode:
    """Whether <think> text is split out of the reply, and whether the client gets it as thinking blocks."""

    split: bool
    show: bool


def new_message_id() -> str:
    """An id in Anthropic's form: msg_ and 24 characters."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def _refuse_unsupported(body: _Prompt) -> None:
    for name in UNSUPPORTED_FIELDS:
        if getattr(body, name, None) is not None:
            raise ApiError("invalid_request", f"{name}: not supported by this server", param=name)


def _check_citations(block, where: str) -> None:
    if block.citations:
        raise ApiError("invalid_request", f"{where}.citations: citations are not supported by this server",
                       param=f"{where}.citations")


def _in_role(block, role: str, at: str, wanted: str) -> None:
    if role != wanted:
        raise ApiError("invalid_request", f"{at}: {block.type} blocks belong in {wanted} messages", param=at)


def _turn(message, index: int, names: dict[str, str]) -> list[Message]:
    """One Anthropic message as engine turns: text and tool_use -> one turn; each tool_result -> a tool turn."""
    if isinstance(message.content, str):
        return [Message(message.role, message.content)]
    where = f"messages.{index}.content"
    out: list[Message] = []
    texts: list[str] = []
    calls: list[ToolCall] = []
    for number, block in enumerate(message.content):
        at = f"{where}.{number}"
        if block.type == "text":
            if not isinstance(block.text, str):
                raise ApiError("invalid_request", f"{at}.text: Field required", param=f"{at}.text")
            _check_citations(block, at)
            texts.append(block.text)
        elif block.type == "tool_use":
            _in_role(block, message.role, at, "assistant")
            call = tools.history_call(block, at)
            names[call.id] = call.name
            calls.append(call)
        elif block.type == "tool_result":
            _in_role(block, message.role, at, "user")
            if texts:  # text before a result stays before it
                out.append(Message("user", "".join(texts)))
                texts = []
            out.append(tools.result_message(block, at, names))
        elif block.type in tools.SERVER_TOOL_BLOCKS:
            raise ApiError("invalid_request", f"{at}: {block.type} blocks: server tools are not supported by "
                           "this server", param=at)
        elif block.type in PAST_THINKING_BLOCKS and message.role == "assistant":
            continue
        else:
            raise ApiError("invalid_request", f"{at}: {block.type} blocks are not supported by this server "
                           "(text, tool_use and tool_result only)", param=at)
    if texts or calls or not out:
        out.append(Message(message.role, "".join(texts), tuple(calls)))
    return out


def _merge(turns: list[Message], turn: Message) -> None:
    """Append `turn`, merged into the last one when both are user or assistant turns (tool turns stand alone)."""
    last = turns[-1] if turns else None
    if last is None or last.role != turn.role or turn.role == "tool":
        turns.append(turn)
        return
    text = "\n\n".join(part for part in (last.content, turn.content) if part)
    turns[-1] = Message(last.role, text, last.tool_calls + turn.tool_calls)


def _system_text(body: _Prompt) -> str:
    if body.system is None or isinstance(body.system, str):
        return body.system or ""
    for number, block in enumerate(body.system):
        _check_citations(block, f"system.{number}")
    return "".join(block.text for block in body.system)


def chat_messages(body: _Prompt) -> tuple[Message, ...]:
    """The system prompt and the turns, consecutive turns of one role merged as Anthropic does."""
    _refuse_unsupported(body)
    tools.check_results_follow(body.messages)
    turns: list[Message] = []
    names: dict[str, str] = {}  # tool_use id -> tool name, for the tool_result that answers it
    for index, message in enumerate(body.messages):
        for turn in _turn(message, index, names):
            _merge(turns, turn)
    if turns[-1].role == "assistant":
        # The chat template always opens a new assistant turn: a prefill would be answered, not continued.
        last = len(body.messages) - 1
        raise ApiError("invalid_request", f"messages.{last}: a final assistant message (prefill) is not supported "
                       "by this server", param=f"messages.{last}")
    system = _system_text(body)
    head = (Message("system", system),) if system else ()
    return head + tuple(turns)


def think_mode(body: _Prompt, max_tokens: Optional[int]) -> ThinkMode:
    """enabled/adaptive: split and show; disabled or absent: split and drop (Anthropic sends no thinking then)."""
    thinking = body.thinking
    if thinking is None or thinking.type == "disabled":
        if thinking is not None and thinking.budget_tokens is not None:
            raise ApiError("invalid_request", "thinking.budget_tokens: only allowed when thinking.type is enabled",
                           param="thinking.budget_tokens")
        return ThinkMode(split=True, show=False)
    if thinking.type == "enabled":
        budget = thinking.budget_tokens
        if budget is None:
            raise ApiError("invalid_request", "thinking.budget_tokens: Field required", param="thinking.budget_tokens")
        if budget < MIN_THINKING_BUDGET:
            raise ApiError("invalid_request", f"thinking.budget_tokens: Input should be greater than or equal to "
                           f"{MIN_THINKING_BUDGET}", param="thinking.budget_tokens")
        if max_tokens is not None and max_tokens <= budget:
            raise ApiError("invalid_request", "max_tokens: must be greater than thinking.budget_tokens",
                           param="max_tokens")
    # "omitted" display: the thinking is not returned at all (there is no signature to stand in for it).
    return ThinkMode(split=True, show=thinking.display != "omitted")


def _stops(body: MessagesRequest) -> tuple[str, ...]:
    stops = tuple(body.stop_sequences or ())
    for number, stop in enumerate(stops):
        if not stop:
            raise ApiError("invalid_request", f"stop_sequences.{number}: must not be empty",
                           param=f"stop_sequences.{number}")
    return stops


def sampling_from(body: MessagesRequest) -> SamplingParams:
    """Anthropic's temperature/top_p/top_k over the engine's defaults (only what the caller set changes)."""
    defaults = SamplingParams()
    return SamplingParams(
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_k=defaults.top_k if body.top_k is None else body.top_k,
        top_p=defaults.top_p if body.top_p is None else body.top_p,
        min_p=defaults.min_p)


def _prompt_fields(body: _Prompt, max_tokens: Optional[int]) -> tuple[dict, ThinkMode]:
    """The GenerateRequest fields a Messages request and a token count share, and how thinking is shown."""
    think = think_mode(body, max_tokens)
    if tools.forces_call(body) and body.thinking is not None and body.thinking.type != "disabled":
        # As Anthropic: a forced call is generated under a grammar that leaves no room for thinking.
        raise ApiError("invalid_request", "tool_choice: thinking may not be enabled when tool_choice forces tool "
                       "use", param="tool_choice")
    fields = {"model": body.model, "messages": chat_messages(body), **tools.tool_fields(body)}
    return fields, think


def from_messages_request(body: MessagesRequest, endpoint: str) -> tuple[GenerateRequest, ThinkMode]:
    """The engine request for a Messages body, and how its thinking is shown."""
    fields, think = _prompt_fields(body, body.max_tokens)
    # max_tokens is an upper bound: a reply that runs into the end of the context stops there (max_tokens).
    request = GenerateRequest(max_tokens=body.max_tokens, cap_to_context=True, stop=_stops(body),
                              split_thinking=think.split, sampling=sampling_from(body), dialect=DIALECT,
                              endpoint=endpoint, **fields)
    return request, think


def from_count_request(body: CountTokensRequest, endpoint: str) -> GenerateRequest:
    """The engine request whose prompt a Messages request with this body would be given (tools included)."""
    fields, _ = _prompt_fields(body, None)  # the same checks as the Messages route
    return GenerateRequest(dialect=DIALECT, endpoint=endpoint, **fields)


def stop_reason(finish_reason: Optional[str], stop_kind: Optional[str], stop_match: object,
                called_tools: bool = False) -> tuple[str, Optional[str]]:
    """Engine end -> (stop_reason, stop_sequence); a reply that called tools ends with tool_use."""
    if finish_reason == "length":
        return "max_tokens", None  # calls finished before the cut are still returned
    if called_tools:
        return "tool_use", None
    if stop_kind == "stop_sequence" and isinstance(stop_match, str):
        return "stop_sequence", stop_match
    return "end_turn", None  # EOS, and a request dismissed before its end (Anthropic has no value for that)


def usage_json(usage: Usage) -> dict:
    """Anthropic usage: input_tokens exclude the prompt prefix reused from the cache (cache_read_input_tokens)."""
    return {"input_tokens": usage.prompt_tokens - usage.cached_tokens, "output_tokens": usage.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": usage.cached_tokens}


def content_blocks(text: str, reasoning: str, show_thinking: bool, calls: tuple[ToolCall, ...] = ()) -> list[dict]:
    """Thinking (when shown), text, then a tool_use block per call; an empty reply is one empty text block."""
    blocks = []
    if show_thinking and reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if text or not (blocks or calls):
        blocks.append({"type": "text", "text": text})
    blocks.extend(tools.tool_use_block(call) for call in calls)
    return blocks


def message_json(message_id: str, model: str, content: list[dict], reason: Optional[str],
                 sequence: Optional[str], usage: Usage) -> dict:
    """A Message object (also the one message_start carries, with empty content and no stop_reason)."""
    return {"id": message_id, "type": "message", "role": "assistant", "content": content, "model": model,
            "stop_reason": reason, "stop_sequence": sequence, "usage": usage_json(usage)}


def to_message(result: GenerateResult, message_id: str, show_thinking: bool) -> dict:
    """The non-streaming answer."""
    reason, sequence = stop_reason(result.finish_reason, result.stop_kind, result.stop_match,
                                   bool(result.tool_calls))
    content = content_blocks(result.text, result.reasoning, show_thinking, result.tool_calls)
    return message_json(message_id, result.model, content, reason, sequence, result.usage)


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error: ApiError, status: int) -> dict:
    """Anthropic's error object."""
    return {"type": "error", "error": {"type": error_type(status), "message": error.message}}
