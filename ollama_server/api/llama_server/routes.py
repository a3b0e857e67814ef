"""llama-server's POST /infill: fill-in-the-middle with the model's FIM tokens, answered as /completion is."""
from __future__ import annotations

from typing import Iterator
from typing import Optional

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask import stream_with_context

from ollama_server.api import client_gone
from ollama_server.api.errors import DEFAULT_STATUS
from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.errors.dialects import Dialect
from ollama_server.api.errors.handlers import install
from ollama_server.api.llama_server.schemas import UNSUPPORTED
from ollama_server.api.llama_server.schemas import InfillBody
from ollama_server.api.openai import translate as openai_tr
from ollama_server.api.streaming import sse_event
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Infill
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import Usage
from ollama_server.engine.types import collect
from ollama_server.services import services


def error_body(error: ApiError, status: int) -> dict:
    """llama-server's error object: the OpenAI type, the HTTP status as `code`."""
    return {"error": {"code": status, "message": error.message,
                      "type": openai_tr.error_body(error)["error"]["type"]}}


LLAMA_SERVER = Dialect("llama-server", DEFAULT_STATUS, error_body)
bp = Blueprint("llama_server", __name__)
install(bp, LLAMA_SERVER)
STOP_TYPES = {"eos": "eos", "stop_sequence": "word", "length": "limit"}  # engine stop_kind -> stop_type


def _refuse_unsupported(body: InfillBody) -> None:
    given = {**(body.model_extra or {})}
    for name in UNSUPPORTED:
        if given.get(name) is not None:
            raise ApiError("invalid_request", f"{name} is not supported by this server", param=name)


def _sampling(body: InfillBody) -> SamplingParams:
    defaults = SamplingParams()  # llama-server's own defaults (0.8, 40, 0.95, 0.05)
    constraint = {}
    if body.grammar is not None and body.json_schema is not None:
        raise ApiError("invalid_request", "give grammar or json_schema, not both", param="grammar")
    if body.grammar is not None:
        constraint = dict(grammar=body.grammar, schema_field="grammar")
    elif body.json_schema is not None:
        constraint = dict(json_schema=body.json_schema, schema_field="json_schema")
    pick = lambda value, default: default if value is None else value  # noqa: E731
    return SamplingParams(
        temperature=pick(body.temperature, defaults.temperature), top_k=pick(body.top_k, defaults.top_k),
        top_p=pick(body.top_p, defaults.top_p), min_p=pick(body.min_p, defaults.min_p),
        repeat_penalty=pick(body.repeat_penalty, defaults.repeat_penalty),
        presence_penalty=body.presence_penalty or 0.0, frequency_penalty=body.frequency_penalty or 0.0,
        seed=body.seed if body.seed is not None and body.seed >= 0 else None, **constraint)


def from_infill(body: InfillBody, endpoint: str) -> GenerateRequest:
    """The engine request for an /infill body."""
    _refuse_unsupported(body)
    if body.n_predict == 0:
        raise ApiError("invalid_request", "n_predict must be -1 (no limit) or a positive number of tokens",
                       param="n_predict")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
    infill = Infill(prefix=body.input_prefix, suffix=body.input_suffix, prompt=body.prompt,
                    extra=tuple((c.filename, c.text) for c in body.input_extra), field="input_suffix")
    return GenerateRequest(model=body.model or None, infill=infill,
                           max_tokens=None if body.n_predict < 0 else body.n_predict, cap_to_context=True,
                           stop=tuple(s for s in stop if s), ignore_eos=body.ignore_eos, sampling=_sampling(body),
                           dialect="llama-server", endpoint=endpoint)


def _timings(usage: Usage) -> dict:
    prompt_ms, predicted_ms = usage.prompt_eval_s * 1000, usage.eval_s * 1000
    rate = lambda n, ms: n / ms * 1000 if ms > 0 else 0.0  # noqa: E731
    timings = {"prompt_n": usage.prompt_tokens, "prompt_ms": prompt_ms,
               "prompt_per_token_ms": prompt_ms / usage.prompt_tokens if usage.prompt_tokens else 0.0,
               "prompt_per_second": rate(usage.prompt_tokens, prompt_ms), "predicted_n": usage.completion_tokens,
               "predicted_ms": predicted_ms,
               "predicted_per_token_ms": predicted_ms / usage.completion_tokens if usage.completion_tokens else 0.0,
               "predicted_per_second": rate(usage.completion_tokens, predicted_ms)}
    if usage.draft_tokens:  # llama-server adds these when it decoded speculatively
        timings.update(draft_n=usage.draft_tokens, draft_n_accepted=usage.accepted_draft_tokens)
    return timings


def _final(body: InfillBody, engine_request: GenerateRequest, generation: Generation, content: str,
           tokens: list[int], stop_kind: Optional[str], stop_match, usage: Usage) -> dict:
    """The stop:true object of /completion."""
    sampling = engine_request.sampling
    return {"index": 0, "content": content, "tokens": tokens if body.return_tokens else [], "id_slot": 0,
            "stop": True, "model": generation.model, "tokens_predicted": usage.completion_tokens,
            "tokens_evaluated": usage.prompt_tokens,
            "generation_settings": {"n_predict": body.n_predict, "temperature": sampling.temperature,
                                    "top_k": sampling.top_k, "top_p": sampling.top_p, "min_p": sampling.min_p,
                                    "seed": -1 if sampling.seed is None else sampling.seed,
                                    "stop": list(engine_request.stop), "ignore_eos": engine_request.ignore_eos},
            "prompt": services().engine.detokenize(generation.model, generation.prompt_tokens),
            "has_new_line": "\n" in content, "truncated": False,
            "stop_type": STOP_TYPES.get(stop_kind or "", "none"),
            "stopping_word": stop_match if isinstance(stop_match, str) else "",
            "tokens_cached": usage.cached_tokens, "timings": _timings(usage)}


@bp.post("/infill")
def infill():
    """Fill-in-the-middle: input_prefix, input_suffix, input_extra and prompt; JSON or SSE."""
    body = parse_body(InfillBody, request.get_data())
    engine_request = from_infill(body, request.path)
    request_id = client_gone.request_id(openai_tr.new_id("infill"))
    generation = client_gone.submit(engine_request, request_id)
    if not body.stream:
        result = collect(generation.model, generation)
        response = jsonify(_final(body, engine_request, generation, result.text, list(result.token_ids),
                                  result.stop_kind, result.stop_match, result.usage))
    else:
        # The final event reads the engine (the prompt's text): the app context must outlive the view.
        response = Response(stream_with_context(_events(body, engine_request, generation)),
                            mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
    response.headers["X-Request-Id"] = request_id
    return response


def _events(body: InfillBody, engine_request: GenerateRequest, generation: Generation) -> Iterator[str]:
    """One `data:` event per piece of text (stop false), then the stop:true object, as llama-server streams."""
    predicted = 0
    try:
        for chunk in generation:
            predicted += len(chunk.token_ids)
            if chunk.text:
                yield sse_event({"index": 0, "content": chunk.text,
                                 "tokens": list(chunk.token_ids) if body.return_tokens else [], "stop": False,
                                 "id_slot": 0, "tokens_predicted": predicted,
                                 "tokens_evaluated": len(generation.prompt_tokens)})
            if chunk.finish_reason is not None:
                usage = chunk.usage or Usage()
                yield sse_event(_final(body, engine_request, generation, "", [], chunk.stop_kind, chunk.stop_match,
                                       usage))
                return
    except EngineError as exc:
        error = from_engine_error(exc)
        yield sse_event(error_body(error, LLAMA_SERVER.status_of(error)))
    finally:  # finished or the client went away: free the slot
        generation.cancel()
