"""Pure Ollama <-> engine translation: bodies to GenerateRequests, chunks and results to Ollama JSON."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from typing import Iterable
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.ollama import tools as tool_api
from ollama_server.api.ollama.model_details import now_rfc3339
from ollama_server.api.ollama.schemas import IGNORED_OPTIONS
from ollama_server.api.ollama.schemas import ChatBody
from ollama_server.api.ollama.schemas import GenerateBody
from ollama_server.api.ollama.schemas import Options
from ollama_server.api.ollama.schemas import _Common
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Infill
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob
from ollama_server.engine.types import Usage

log = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's five minutes
RAW_CONFLICT = "raw mode does not support template, system, or context"
# Ollama's DefaultOptions() for the sampling knobs the engine has.
OLLAMA_SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.0,
                   "presence_penalty": 0.0, "frequency_penalty": 0.0}
_NUMBER_TYPES = {"temperature": float, "top_p": float, "min_p": float, "repeat_penalty": float,
                 "presence_penalty": float, "frequency_penalty": float, "top_k": int}


@dataclass(frozen=True)
class ThinkMode:
    """Whether the engine splits <think> text out, and whether the client is shown it."""

    split: bool
    show: bool


def think_mode(think: Any, preserve_think_tags: bool) -> ThinkMode:
    """think on: split and show; off or absent: keep the tags if configured, else split and drop."""
    if think is True or isinstance(think, str):
        return ThinkMode(split=True, show=True)
    return ThinkMode(split=not preserve_think_tags, show=False)


def keep_alive_seconds(value: Optional[float], default: float = DEFAULT_KEEP_ALIVE_S) -> Optional[float]:
    """Parsed keep_alive -> engine seconds: absent is the configured default, negative is None (forever)."""
    if value is None:
        value = default
    return None if value < 0 else value


def _model_defaults(parameters: dict) -> dict:
    """Usable sampling values from a Modelfile's PARAMETERs (wrong types are skipped)."""
    found = {}
    for key, kind in _NUMBER_TYPES.items():
        value = parameters.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[key] = kind(value)
    return found


def sampling(options: Optional[Options], json_schema: Optional[dict], parameters: dict | None = None) -> SamplingParams:
    """Ollama defaults, then the model's PARAMETERs, then the request's options."""
    values = {**OLLAMA_SAMPLING, **_model_defaults(parameters or {})}
    seed = None
    if options is not None:
        values.update({key: getattr(options, key) for key in OLLAMA_SAMPLING if getattr(options, key) is not None})
        seed = options.seed if options.seed is not None and options.seed >= 0 else None
    return SamplingParams(seed=seed, json_schema=json_schema, schema_field="format", **values)


def max_tokens(options: Optional[Options]) -> Optional[int]:
    """num_predict: positive is a limit; -1, -2, 0 or absent run to the end of the context.

    Other negatives never get here: the schema refuses them (Options.num_predict).
    """
    if options is None or options.num_predict is None or options.num_predict <= 0:
        return None
    return options.num_predict


def _stops(options: Optional[Options], parameters: dict) -> tuple[str, ...]:
    stop = options.stop if options is not None and options.stop is not None else parameters.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    return tuple(s for s in stop or () if isinstance(s, str) and s)


def json_schema(fmt: Any) -> Optional[dict]:
    """format: "json" is any JSON ({}), an object is a schema, absent or "" is free text."""
    if fmt == "json":
        return {}
    return fmt if isinstance(fmt, dict) else None


def log_ignored_options(options: Optional[Options]) -> None:
    """Unknown option keys are logged and ignored, as Ollama does."""
    if options is None:
        return
    for key in options.model_extra or {}:
        log.warning("invalid option provided: %s (ignored)", key)
    for key in IGNORED_OPTIONS:
        if getattr(options, key) is not None:
            log.debug("option %s is accepted but has no effect here", key)


def unsupported(model: str, capability: str) -> ApiError:
    return ApiError("invalid_request", f'"{model}" does not support {capability}')


def _base(body: _Common, think: ThinkMode, endpoint: str, parameters: dict) -> dict:
    log_ignored_options(body.options)
    options = body.options
    num_ctx = options.num_ctx if options is not None and options.num_ctx and options.num_ctx > 0 else None
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return dict(model=body.model or None, max_tokens=max_tokens(options), stop=_stops(options, parameters),
                sampling=sampling(options, json_schema(body.format), parameters), num_ctx=num_ctx,
                cap_to_context=True, split_thinking=think.split, logprobs=logprobs, dialect="ollama",
                endpoint=endpoint, think=body.think)  # think reaches the template (chat_format.template_variables)


def check_generate(body: GenerateBody, model: str) -> None:
    """Ollama's own refusals for /api/generate, before any model work."""
    if body.raw and (body.template or body.system or body.context):
        raise ApiError("invalid_request", RAW_CONFLICT)
    if body.suffix and body.system:  # a FIM prompt has no place for a system turn
        raise ApiError("invalid_request", "system cannot be combined with suffix", param="system")
    if body.images:
        raise unsupported(model, "vision")


def from_generate(body: GenerateBody, think: ThinkMode, endpoint: str, system: Optional[str] = None,
                  parameters: dict | None = None) -> GenerateRequest:
    """An engine request for /api/generate: raw prompt, or a user turn (after an optional system turn)."""
    parameters = parameters or {}
    base = _base(body, think, endpoint, parameters)
    if body.suffix:  # fill-in-the-middle (engine/infill.py); "does not support insert" without FIM tokens
        return GenerateRequest(infill=Infill(prefix=body.prompt or "", suffix=body.suffix), **base)
    if body.raw:
        return GenerateRequest(prompt=body.prompt or "", **base)
    if body.template:
        log.info("template override ignored: the model's own chat template is used")
    if body.context:
        log.info("context (deprecated conversation memory) ignored")
    system_text = body.system or system  # as in Ollama, an empty system keeps the model's own
    turns = (Message("system", system_text),) if system_text else ()
    return GenerateRequest(messages=turns + (Message("user", body.prompt or ""),), **base)


def check_chat(body: ChatBody, model: str) -> None:
    """Ollama's capability refusals for /api/chat (tools are served for every model: engine/chat_format.py)."""
    if any(m.images for m in body.messages or ()):
        raise unsupported(model, "vision")


def from_chat(body: ChatBody, think: ThinkMode, endpoint: str, system: Optional[str] = None,
              parameters: dict | None = None) -> GenerateRequest:
    """An engine request for /api/chat; the model's SYSTEM leads unless the chat starts with one."""
    parameters = parameters or {}
    messages = tuple(Message(m.role, m.content or "", tool_api.history_calls(m.tool_calls, i),
                             m.tool_call_id, m.tool_name if m.role == "tool" else None)
                     for i, m in enumerate(body.messages or ()))
    if system and (not messages or messages[0].role != "system"):
        messages = (Message("system", system),) + messages
    # Ollama has no tool_choice: tools are offered and calls parsed (auto).
    return GenerateRequest(messages=messages, tools=tool_api.parse_tools(body.tools),
                           **_base(body, think, endpoint, parameters))


# --- responses -------------------------------------------------------------------------------------
def nanoseconds(seconds: float) -> int:
    return int(round(seconds * 1e9))


def metrics(usage: Usage) -> dict:
    """Ollama's Metrics block; durations in nanoseconds."""
    return {
        "total_duration": nanoseconds(usage.total_s),
        "load_duration": nanoseconds(usage.load_s),
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": nanoseconds(usage.prompt_eval_s),
        "eval_count": usage.completion_tokens,
        "eval_duration": nanoseconds(usage.eval_s),
    }


CANCELLED = "cancelled"


def done_reason(finish_reason: Optional[str]) -> str:
    """Engine finish reason -> Ollama's done_reason: 'length', 'stop', or 'cancelled' for a dismissed request."""
    if finish_reason == "cancelled":
        return CANCELLED
    return "length" if finish_reason == "length" else "stop"


def logprobs_json(logprobs: Iterable[TokenLogprob]) -> list[dict]:
    return [{"token": lp.text, "logprob": lp.logprob,
             "top_logprobs": [{"token": text, "logprob": value} for _, text, value in lp.top]}
            for lp in logprobs]


def piece(kind: str, model: str, content: str, thinking: str = "",
          logprobs: Iterable[TokenLogprob] = (), tool_calls: list[dict] | None = None) -> dict:
    """One streamed object (done false): `response` for generate, `message` for chat."""
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        if tool_calls:
            message["tool_calls"] = tool_calls
        out["message"] = message
    else:
        out["response"] = content
        if thinking:
            out["thinking"] = thinking
    logprobs = logprobs_json(logprobs)
    if logprobs:
        out["logprobs"] = logprobs
    out["done"] = False
    return out


def final(kind: str, model: str, reason: str, usage: Optional[Usage], content: str = "", thinking: str = "",
          logprobs: Iterable[TokenLogprob] = (), tool_calls: list[dict] | None = None) -> dict:
    """The done:true object: done_reason and, for generations, the metrics."""
    out = piece(kind, model, content, thinking, logprobs, tool_calls)
    out["done"] = True
    out["done_reason"] = reason
    if usage is not None:
        out.update(metrics(usage))
    return out


def error_body(message: str) -> dict:
    return {"error": message}
