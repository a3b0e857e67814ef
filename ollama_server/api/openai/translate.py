"""Pure OpenAI <-> engine translation: request bodies to GenerateRequests, results and chunks to OpenAI JSON."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.openai import tools as tool_api
from ollama_server.api.openai.constraints import constraint_of
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.openai.schemas import _Sampling
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Infill
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob
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


def sampling_from(body: _Sampling, seed_offset: int = 0) -> SamplingParams:
    """OpenAI and vLLM sampling fields over the engine's defaults (only what the caller set changes)."""
    defaults = SamplingParams()
    top_k = defaults.top_k if body.top_k is None else max(body.top_k, 0)  # vLLM: -1 and 0 mean off
    return SamplingParams(
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_k=top_k,
        top_p=defaults.top_p if body.top_p is None else body.top_p,
        min_p=defaults.min_p if body.min_p is None else body.min_p,
        repeat_penalty=defaults.repeat_penalty if body.repetition_penalty is None else body.repetition_penalty,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=None if body.seed is None else body.seed + seed_offset,
    )


def message_text(message) -> str:
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


def _common(body: _Sampling, endpoint: str, choice: int) -> dict:
    return dict(model=body.model or None, stop=_stops(body.stop), min_tokens=body.min_tokens,
                ignore_eos=body.ignore_eos, stop_token_ids=tuple(body.stop_token_ids or ()),
                include_stop_str=body.include_stop_str_in_output, dialect="openai", endpoint=endpoint)


def from_chat_request(body: ChatCompletionRequest, endpoint: str, default_max_tokens: int = 0) -> list[GenerateRequest]:
    """One engine request per choice (n); reasoning is always split out of the content.

    With no max_tokens the reply is capped at default_max_tokens (0: the rest of the context), and a
    default that does not fit the context is shortened rather than refused.
    """
    asked = body.max_completion_tokens or body.max_tokens
    max_tokens = asked or (default_max_tokens or None)
    messages = tuple(Message(m.role, message_text(m), tool_api.history_calls(m.tool_calls, i), m.tool_call_id,
                             m.name if m.role == "tool" else None) for i, m in enumerate(body.messages))
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    constraint = constraint_of(body)
    tool_fields = tool_api.tool_fields(body)
    requests = []
    for choice in range(body.n):
        sampling = replace(sampling_from(body, choice), **constraint)
        requests.append(GenerateRequest(messages=messages, max_tokens=max_tokens, cap_to_context=asked is None,
                                        logprobs=logprobs, split_thinking=True, sampling=sampling,
                                        **tool_fields, **thinking_fields(body), **_common(body, endpoint, choice)))
    return requests


def thinking_fields(body: ChatCompletionRequest) -> dict:
    """reasoning_effort ("none": no thinking, else thinking at that level) and chat_template_kwargs, for the
    chat template (engine/chat_format.template_variables refuses what the model's template cannot take)."""
    think = None if body.reasoning_effort is None else (False if body.reasoning_effort == "none"
                                                         else body.reasoning_effort)
    return dict(think=think, think_field="reasoning_effort", template_vars=dict(body.chat_template_kwargs or {}))


def _infill(body: CompletionRequest, prompt) -> Infill:
    """The fill-in-the-middle request of a text prompt with a suffix."""
    if not isinstance(prompt, str):
        raise ApiError("invalid_request", "suffix needs a text prompt, not token ids", param="suffix")
    if body.echo:
        raise ApiError("invalid_request", "echo cannot be combined with suffix", param="echo")
    return Infill(prefix=prompt, suffix=body.suffix or "")


def from_completion_request(body: CompletionRequest, endpoint: str) -> list[GenerateRequest]:
    """One engine request per prompt and choice: choice index = prompt_index * n + i."""
    prompt = body.prompt
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompts = [tuple(prompt)]
    else:
        prompts = [p if isinstance(p, str) else tuple(p) for p in prompt]
    if not prompts or any(not isinstance(p, str) and not p for p in prompts):
        # The schema refuses these already; without a prompt the routes would index an empty list.
        raise ApiError("invalid_request", "please provide at least one prompt", param="prompt")
    constraint = constraint_of(body)
    requests = []
    for p in prompts:
        for choice in range(body.n):
            sampling = replace(sampling_from(body, choice), **constraint)
            base = dict(max_tokens=body.max_tokens, logprobs=body.logprobs, sampling=sampling,
                        **_common(body, endpoint, choice))
            if body.suffix:  # fill-in-the-middle: the engine lays it out with the model's FIM tokens
                requests.append(GenerateRequest(infill=_infill(body, p), **base))
            else:
                requests.append(GenerateRequest(prompt=p, **base) if isinstance(p, str)
                                else GenerateRequest(prompt_tokens=p, **base))
    return requests


def usage_json(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def chat_logprobs(entries: tuple[TokenLogprob, ...]) -> Optional[dict]:
    """OpenAI chat logprobs: one entry per token with its top alternatives."""
    if not entries:
        return None
    return {"content": [{"token": e.text, "logprob": e.logprob, "bytes": list(e.text.encode()),
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                          for _, t, lp in e.top]} for e in entries]}


def completion_logprobs(entries: tuple[TokenLogprob, ...], start_offset: int = 0) -> Optional[dict]:
    """Legacy completions logprobs (as vLLM returns them)."""
    if not entries:
        return None
    offsets, offset = [], start_offset
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.text)
    return {"text_offset": offsets, "token_logprobs": [e.logprob for e in entries],
            "tokens": [e.text for e in entries], "top_logprobs": [{t: lp for _, t, lp in e.top} for e in entries]}


# vLLM's FinishReason.ABORT: OpenAI has no value for a request dismissed before its natural end.
ABORTED = "abort"


def finish_reason(reason: Optional[str], called_tools: bool = False) -> Optional[str]:
    """Engine finish reason -> OpenAI's: 'length', 'stop' ('tool_calls' when the model called tools), or
    vLLM's 'abort' for a dismissed request."""
    if reason is None:
        return None
    if reason == "cancelled":
        return ABORTED
    if reason == "length":
        return "length"
    return "tool_calls" if called_tools else "stop"


def chat_message(result: GenerateResult) -> dict:
    message = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None  # as OpenAI answers a pure call
        message["tool_calls"] = [tool_api.call_json(call) for call in result.tool_calls]
    if result.reasoning:
        # Both spellings: older clients read reasoning_content, newer ones reasoning.
        message["reasoning_content"] = result.reasoning
        message["reasoning"] = result.reasoning
    return message


def _total_usage(results: list[GenerateResult]) -> Usage:
    # n choices of one prompt share the prompt: count it once per distinct prompt, as OpenAI does.
    return Usage(prompt_tokens=sum(r.usage.prompt_tokens for r in results),
                 completion_tokens=sum(r.usage.completion_tokens for r in results),
                 cached_tokens=sum(r.usage.cached_tokens for r in results))


def to_chat_completion(results: list[GenerateResult], response_id: str, created: int) -> dict:
    usage = _total_usage(results)
    usage = replace(usage, prompt_tokens=results[0].usage.prompt_tokens)
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": results[0].model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": i, "message": chat_message(r), "logprobs": chat_logprobs(r.logprobs),
                     "finish_reason": finish_reason(r.finish_reason, bool(r.tool_calls)), "stop_reason": r.stop_match}
                    for i, r in enumerate(results)],
        "usage": usage_json(usage),
    }


def to_completion(results: list[GenerateResult], response_id: str, created: int, echo_prompts: list[str],
                  prompt_count: int) -> dict:
    usage = _total_usage(results)
    per_prompt = len(results) // max(prompt_count, 1)
    usage = replace(usage, prompt_tokens=sum(r.usage.prompt_tokens for r in results[::per_prompt]))
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": results[0].model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": i, "text": echo_prompts[i] + r.text,
                     "logprobs": completion_logprobs(r.logprobs, len(echo_prompts[i])),
                     "finish_reason": finish_reason(r.finish_reason), "stop_reason": r.stop_match}
                    for i, r in enumerate(results)],
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


def model_card(name: str, created: int, root: str, context_length: Optional[int]) -> dict:
    """An OpenAI model entry with vLLM's extras (root, max_model_len)."""
    return {"id": name, "object": "model", "created": created, "owned_by": "library", "root": root,
            "parent": None, "max_model_len": context_length}


def error_body(error: ApiError) -> dict:
    types = {"invalid_request": "invalid_request_error", "not_found": "not_found_error",
             "too_large": "invalid_request_error", "busy": "rate_limit_error", "unauthorized": "authentication_error",
             "unavailable": "unavailable_error", "timeout": "timeout_error", "not_implemented": "not_supported_error"}
    return {"error": {"message": error.message, "type": types.get(error.kind, "api_error"),
                      "param": error.param, "code": error.code}}


def now() -> int:
    return int(time.time())
