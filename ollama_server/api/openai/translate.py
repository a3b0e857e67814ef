"""Pure OpenAI <-> engine translation: request bodies to GenerateRequests, results and chunks to OpenAI JSON."""
from __future__ import annotations

import time
import uuid
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.openai.schemas import _Sampling
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import Usage

FINGERPRINT = "fp_ollama_server"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _stops(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    return tuple(s for s in stop if s)


def sampling_from(body: _Sampling) -> SamplingParams:
    """OpenAI sampling fields over the engine's defaults (only what the caller set changes)."""
    defaults = SamplingParams()
    return SamplingParams(
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_k=defaults.top_k,
        top_p=defaults.top_p if body.top_p is None else body.top_p,
        min_p=defaults.min_p,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=body.seed,
    )


def _message_text(message) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text":
            raise ApiError("invalid_request", "image content is not supported by this model", param="messages")
        texts.append(part.text)
    return "".join(texts)


def from_chat_request(body: ChatCompletionRequest, endpoint: str) -> GenerateRequest:
    """An engine request for a chat completion."""
    if body.logprobs:
        raise ApiError("invalid_request", "logprobs is not supported for chat completions yet", param="logprobs")
    messages = tuple(Message(m.role, _message_text(m)) for m in body.messages)
    return GenerateRequest(
        model=body.model or None,
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=_stops(body.stop),
        sampling=sampling_from(body),
        dialect="openai",
        endpoint=endpoint,
    )


def from_completion_request(body: CompletionRequest, endpoint: str) -> list[GenerateRequest]:
    """One engine request per prompt (a list of prompts gives one choice each)."""
    if body.suffix:
        raise ApiError("invalid_request", "suffix (fill-in-the-middle) is not supported", param="suffix")
    if body.logprobs is not None:
        raise ApiError("invalid_request", "logprobs is not supported yet", param="logprobs")
    prompt = body.prompt
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompts = [tuple(prompt)]
    else:
        prompts = [p if isinstance(p, str) else tuple(p) for p in prompt]
    base = dict(model=body.model or None, max_tokens=body.max_tokens, stop=_stops(body.stop),
                sampling=sampling_from(body), dialect="openai", endpoint=endpoint)
    return [GenerateRequest(prompt=p, **base) if isinstance(p, str) else GenerateRequest(prompt_tokens=p, **base)
            for p in prompts]


def usage_json(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def finish_reason(reason: Optional[str]) -> Optional[str]:
    """OpenAI has no 'cancelled'; a cancelled request is over, so it reports 'stop'."""
    if reason is None:
        return None
    return "length" if reason == "length" else "stop"


def to_chat_completion(result: GenerateResult, response_id: str, created: int) -> dict:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "logprobs": None,
            "finish_reason": finish_reason(result.finish_reason),
        }],
        "usage": usage_json(result.usage),
    }


def to_completion(results: list[GenerateResult], response_id: str, created: int, echo_prompts: list[str]) -> dict:
    usage = Usage(prompt_tokens=sum(r.usage.prompt_tokens for r in results),
                  completion_tokens=sum(r.usage.completion_tokens for r in results),
                  cached_tokens=sum(r.usage.cached_tokens for r in results))
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": results[0].model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": i, "text": echo_prompts[i] + r.text, "logprobs": None,
                     "finish_reason": finish_reason(r.finish_reason)} for i, r in enumerate(results)],
        "usage": usage_json(usage),
    }


def chat_chunk(response_id: str, created: int, model: str, delta: dict, finish: Optional[str] = None,
               with_usage_field: bool = False) -> dict:
    chunk = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage_field:
        chunk["usage"] = None
    return chunk


def completion_chunk(response_id: str, created: int, model: str, index: int, text: str,
                     finish: Optional[str] = None, with_usage_field: bool = False) -> dict:
    chunk = {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage_field:
        chunk["usage"] = None
    return chunk


def usage_chunk(response_id: str, created: int, model: str, obj: str, usage: Usage) -> dict:
    return {"id": response_id, "object": obj, "created": created, "model": model,
            "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage_json(usage)}


def model_card(name: str, created: int, context_length: Optional[int] = None) -> dict:
    card = {"id": name, "object": "model", "created": created, "owned_by": "library"}
    if context_length:
        card["max_model_len"] = context_length
    return card


def error_body(error: ApiError) -> dict:
    types = {"invalid_request": "invalid_request_error", "not_found": "not_found_error",
             "too_large": "invalid_request_error", "busy": "rate_limit_error", "unauthorized": "authentication_error",
             "unavailable": "unavailable_error", "timeout": "timeout_error", "not_implemented": "not_supported_error"}
    return {"error": {"message": error.message, "type": types.get(error.kind, "api_error"),
                      "param": error.param, "code": error.code}}


def now() -> int:
    return int(time.time())
