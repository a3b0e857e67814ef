"""Pure TGI <-> engine translation: TGI's validation rules, requests, stream events, responses, errors."""
from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from typing import Callable
from typing import Iterable
from typing import Iterator
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.tgi.schemas import GenerateBody
from ollama_server.api.tgi.schemas import Parameters
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob
from ollama_server.engine.types import Usage

# TGI's own default for an unset max_new_tokens is "whatever is left of the context"; that can be
# minutes of CPU decoding here, so an unset value means 100 tokens, shortened to fit the context.
DEFAULT_MAX_NEW_TOKENS = 100
MAX_STOP_SEQUENCES = 4
MAX_BEST_OF = 1
MAX_TOP_N_TOKENS = 5
# TGI's own three, plus "cancelled" for a dismissed request: TGI has no such value, but
# huggingface_hub's InferenceClient does not check the Literal when it parses (tests pin that),
# and calling a dismissed reply "length" or "eos_token" would tell the client it ended naturally.
CANCELLED = "cancelled"
FINISH_REASONS = {"eos": "eos_token", "stop_sequence": "stop_sequence", "length": "length", "cancelled": CANCELLED}


def _invalid(message: str, param: str) -> ApiError:
    return ApiError("invalid_request", message, param=param)


def parameters_of(body: GenerateBody) -> Parameters:
    """The parameters object; absent or null means all defaults."""
    return body.parameters if body.parameters is not None else Parameters()


def validate(body: GenerateBody, stream: bool) -> None:
    """TGI's value rules (router validation.rs), worded as TGI words them; raises ApiError."""
    p = parameters_of(body)
    if not body.inputs:
        raise _invalid("`inputs` cannot be empty", "inputs")
    best_of = 1 if p.best_of is None else p.best_of
    if not 0 < best_of <= MAX_BEST_OF:
        raise _invalid(f"`best_of` must be > 0 and <= {MAX_BEST_OF}. Given: {best_of}", "best_of")
    if stream and p.decoder_input_details:
        raise _invalid("`decoder_input_details` == true is not supported when streaming tokens",
                       "decoder_input_details")
    checks = [
        (p.temperature is not None and p.temperature <= 0, "temperature", "`temperature` must be strictly positive"),
        (p.repetition_penalty is not None and p.repetition_penalty <= 0, "repetition_penalty",
         "`repetition_penalty` must be strictly positive"),
        (p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0, "frequency_penalty",
         "`frequency_penalty` must be >= -2.0 and <= 2.0"),
        (p.top_p is not None and not 0.0 < p.top_p < 1.0, "top_p", "`top_p` must be > 0.0 and < 1.0"),
        (p.typical_p is not None and not 0.0 < p.typical_p < 1.0, "typical_p",
         "`typical_p` must be > 0.0 and < 1.0"),
        (p.top_k is not None and p.top_k <= 0, "top_k", "`top_k` must be strictly positive"),
        (p.max_new_tokens is not None and p.max_new_tokens <= 0, "max_new_tokens",
         "`max_new_tokens` must be strictly positive"),
        (p.truncate is not None and p.truncate <= 0, "truncate", "`truncate` must be strictly positive"),
        (p.top_n_tokens is not None and not 0 <= p.top_n_tokens <= MAX_TOP_N_TOKENS, "top_n_tokens",
         f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {p.top_n_tokens}"),
        (len(p.stop or ()) > MAX_STOP_SEQUENCES, "stop",
         f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(p.stop or ())}"),
        (p.watermark is True, "watermark", "`watermark` is not supported by this server"),
        (bool(p.adapter_id), "adapter_id", "`adapter_id`: LoRA adapters are not supported by this server"),
    ]
    for failed, param, message in checks:
        if failed:
            raise _invalid(message, param)


def constraint_of(p: Parameters) -> dict:
    """SamplingParams fields for `grammar`: a JSON schema ({} = any JSON) or a regex; {} without a grammar.
    Other grammar types are a 422, never ignored."""
    if p.grammar is None:
        return {}
    kind, value = p.grammar.type, p.grammar.value
    if kind == "regex":
        if not isinstance(value, str):
            raise _invalid("grammar value must be a regular expression string for type 'regex'", "grammar")
        return {"regex": value, "schema_field": "grammar"}
    if kind == "json_schema" and isinstance(value, dict) and "schema" in value:
        value = value["schema"]  # TGI's JsonSchemaConfig {name, schema}
    elif kind not in ("json", "json_schema"):
        raise _invalid(f"grammar type '{kind}' is not supported (only 'json', 'json_schema' and 'regex')",
                       "grammar")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid("grammar value is not valid JSON", "grammar") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _invalid("grammar value must be a JSON schema object", "grammar")
    return {"json_schema": value, "schema_field": "grammar"}


def sampling_active(p: Parameters) -> bool:
    """TGI samples if do_sample or any sampling knob is set; otherwise it decodes greedily."""
    return bool(p.do_sample) or any(v is not None for v in (p.temperature, p.top_k, p.top_p, p.typical_p))


def sampling_from(p: Parameters) -> SamplingParams:
    """Engine sampling for TGI parameters; unset knobs are TGI's neutral values (typical_p is ignored)."""
    seed = None if p.seed is None else p.seed % 2**32  # llama.cpp seeds are 32-bit; TGI's are u64
    common = dict(repeat_penalty=p.repetition_penalty or 1.0, frequency_penalty=p.frequency_penalty or 0.0,
                  seed=seed, **constraint_of(p))
    if not sampling_active(p):
        return SamplingParams(temperature=0.0, **common)
    return SamplingParams(temperature=1.0 if p.temperature is None else p.temperature,
                          top_k=p.top_k or 0, top_p=1.0 if p.top_p is None else p.top_p, min_p=0.0, **common)


def model_of(body: GenerateBody) -> Optional[str]:
    """The model named by the request (top-level or in parameters); None means the default model."""
    return body.model or parameters_of(body).model or None


def logprobs_wanted(p: Parameters, stream: bool) -> Optional[int]:
    """Per-token logprobs are needed for details and for every stream event."""
    if p.top_n_tokens:
        return p.top_n_tokens
    return 0 if (stream or p.details or p.decoder_input_details) else None


def to_engine_request(body: GenerateBody, endpoint: str, stream: bool,
                      prompt_tokens: Optional[tuple[int, ...]] = None) -> GenerateRequest:
    """A validated engine request; prompt_tokens replaces the text prompt (after truncation)."""
    validate(body, stream)
    p = parameters_of(body)
    return GenerateRequest(
        model=model_of(body),
        prompt=None if prompt_tokens is not None else body.inputs,
        prompt_tokens=prompt_tokens,
        max_tokens=p.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
        cap_to_context=p.max_new_tokens is None,
        stop=tuple(s for s in (p.stop or ()) if s),
        include_stop_str=True,  # TGI's generated_text keeps the stop sequence that ended it
        logprobs=logprobs_wanted(p, stream),
        sampling=sampling_from(p),
        dialect="tgi",
        endpoint=endpoint,
    )


def reported_seed(p: Parameters, used: Optional[int]) -> Optional[int]:
    """TGI reports a seed only when sampling: the caller's, else the one picked for them."""
    if not sampling_active(p):
        return None
    return p.seed if p.seed is not None else used


def finish_reason(stop_kind: Optional[str]) -> str:
    return FINISH_REASONS.get(stop_kind or "", "length")


def token_json(token_id: int, text: str, logprob: Optional[float], special: bool = False) -> dict:
    return {"id": token_id, "text": text, "logprob": logprob, "special": special}


def _top_json(entry: Optional[TokenLogprob]) -> list[dict]:
    return [token_json(i, t, lp) for i, t, lp in entry.top] if entry else []


def chunk_tokens(chunk: Chunk) -> Iterator[tuple[dict, list[dict]]]:
    """(token, top tokens) for each token a chunk carries; the text is the token's own when known."""
    for position, token_id in enumerate(chunk.token_ids):
        entry = chunk.logprobs[position] if position < len(chunk.logprobs) else None
        text = entry.text if entry else (chunk.text if len(chunk.token_ids) == 1 else "")
        # Control tokens end generation and are never emitted as text, so a streamed token is never special.
        yield token_json(token_id, text, entry.logprob if entry else None), _top_json(entry)


@dataclass(frozen=True)
class StreamPlan:
    """What the stream events need to know about the request."""

    prefix: str = ""          # the inputs, when return_full_text
    details: bool = False
    top_n: int = 0
    parameters: Parameters = field(default_factory=Parameters)
    eos_token: Callable[[], tuple[int, str]] = lambda: (0, "")


def stream_event(index: int, token: dict, top: list[dict], plan: StreamPlan) -> dict:
    event = {"index": index, "token": token, "generated_text": None, "details": None}
    if plan.top_n and top:
        event["top_tokens"] = top
    return event


def stream_details(final: Chunk, plan: StreamPlan) -> dict:
    usage = final.usage or Usage()
    return {"finish_reason": finish_reason(final.stop_kind), "generated_tokens": usage.completion_tokens,
            "seed": reported_seed(plan.parameters, final.seed), "input_length": usage.prompt_tokens}


def stream_payloads(chunks: Iterable[Chunk], plan: StreamPlan) -> Iterator[dict]:
    """One event per token; the last one carries generated_text (and details); an error ends the stream."""
    pending: Optional[dict] = None
    index = 0
    texts: list[str] = []
    try:
        for chunk in chunks:
            texts.append(chunk.text)
            for token, top in chunk_tokens(chunk):
                if pending is not None:
                    yield pending
                index += 1
                pending = stream_event(index, token, top, plan)
            if chunk.finish_reason is None:
                continue
            if pending is None:  # nothing generated: the end-of-generation token is the one event
                eos_id, eos_text = plan.eos_token()
                pending = stream_event(1, token_json(eos_id, eos_text, 0.0, special=True), [], plan)
            pending["generated_text"] = plan.prefix + "".join(texts)
            if plan.details:
                pending["details"] = stream_details(chunk, plan)
            yield pending
            return
    except EngineError as exc:
        if pending is not None:
            yield pending
        yield error_body(exc.message, error_status(exc.kind)[1])
        return
    # No final chunk: the engine ends a generation that way only when it was dismissed before it
    # started. TGI's stream still ends with generated_text, so close it as a cancelled one.
    if pending is None:
        eos_id, eos_text = plan.eos_token()
        pending = stream_event(1, token_json(eos_id, eos_text, 0.0, special=True), [], plan)
    pending["generated_text"] = plan.prefix + "".join(texts)
    if plan.details:
        pending["details"] = stream_details(Chunk(finish_reason=CANCELLED, stop_kind=CANCELLED), plan)
    yield pending


def generate_response(result: GenerateResult, p: Parameters, prefix: str,
                      prefill: Optional[list[dict]] = None) -> dict:
    """The /generate body: generated_text, and details when asked."""
    body: dict = {"generated_text": prefix + result.text}
    if not (p.details or p.decoder_input_details):
        return body
    entries: list[Optional[TokenLogprob]] = list(result.logprobs) or [None] * len(result.token_ids)
    tokens = [token_json(t, e.text if e else "", e.logprob if e else None)
              for t, e in zip(result.token_ids, entries)]
    details = {"finish_reason": finish_reason(result.stop_kind), "generated_tokens": result.usage.completion_tokens,
               "seed": reported_seed(p, result.seed), "prefill": prefill or [], "tokens": tokens}
    if p.top_n_tokens:
        details["top_tokens"] = [_top_json(e) for e in entries]
    body["details"] = details
    return body


def timing_headers(usage: Usage, inputs: str, compute_type: str = "cpu") -> dict:
    """TGI's x-* response headers: x-compute-time in seconds, the other times in milliseconds."""
    inference_s = usage.prompt_eval_s + usage.eval_s
    per_token_s = inference_s / usage.completion_tokens if usage.completion_tokens else 0.0
    return {
        "x-compute-type": compute_type,
        "x-compute-time": f"{usage.total_s:.6f}",
        "x-compute-characters": str(len(inputs)),
        "x-total-time": str(round(usage.total_s * 1000)),
        "x-validation-time": "0",
        "x-queue-time": str(round(usage.queue_s * 1000)),
        "x-inference-time": str(round(inference_s * 1000)),
        "x-time-per-token": str(round(per_token_s * 1000)),
        "x-prompt-tokens": str(usage.prompt_tokens),
        "x-generated-tokens": str(usage.completion_tokens),
    }


def info(model_id: str, max_total_tokens: int, max_concurrent: int, version: str, device: str = "cpu") -> dict:
    """GET /info."""
    return {
        "model_id": model_id, "model_sha": None, "model_dtype": "gguf", "model_device_type": device,
        "model_pipeline_tag": "text-generation", "max_concurrent_requests": max_concurrent,
        "max_best_of": MAX_BEST_OF, "max_stop_sequences": MAX_STOP_SEQUENCES,
        "max_input_tokens": max(max_total_tokens - 1, 1), "max_total_tokens": max_total_tokens,
        "validation_workers": 1, "max_client_batch_size": 1, "router": "text-generation-router",
        "version": version, "sha": None, "docker_label": None,
    }


def error_status(kind: str) -> tuple[int, str]:
    """(HTTP status, TGI error_type) for an error kind. An unknown model is a validation error (422):
    TGI serves one model and has no such case, and huggingface_hub then raises ValidationError."""
    if kind in ("invalid_request", "not_found"):
        return 422, "validation"
    if kind == "too_large":
        return 413, "validation"
    if kind == "busy":
        return 429, "overloaded"
    if kind == "unauthorized":
        return 401, "unauthorized"
    if kind == "unavailable":
        return 503, "unavailable"
    return 424, "generation"


def error_message(exc: EngineError) -> str:
    """TGI's wording for a too-long request; the engine's message otherwise."""
    if not isinstance(exc, ContextLengthError):
        return exc.message
    if exc.max_tokens is None or exc.prompt_tokens >= exc.context_length:
        return f"`inputs` must have less than {exc.context_length} tokens. Given: {exc.prompt_tokens}"
    return (f"`inputs` tokens + `max_new_tokens` must be <= {exc.context_length}. Given: {exc.prompt_tokens} "
            f"`inputs` tokens and {exc.max_tokens} `max_new_tokens`")


def error_body(message: str, error_type: str) -> dict:
    return {"error": message, "error_type": error_type}
