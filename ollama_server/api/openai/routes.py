"""OpenAI HTTP wiring: parse, submit to the engine, answer as JSON or SSE."""
from __future__ import annotations

from typing import Iterator

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from ollama_server.api.errors import ApiError
from ollama_server.api.errors import DEFAULT_STATUS
from ollama_server.api.errors import from_engine_error
from ollama_server.api.openai import translate as tr
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.streaming import sse_event
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Usage
from ollama_server.engine.types import collect
from ollama_server.services import services

bp = Blueprint("openai", __name__)
DONE = "data: [DONE]\n\n"


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    status = error.status or DEFAULT_STATUS.get(error.kind, 500)
    response = jsonify(tr.error_body(error))
    response.status_code = status
    response.headers.update(error.headers)
    return response


@bp.errorhandler(EngineError)
def engine_error(error: EngineError):
    return api_error(from_engine_error(error))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    kind = {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(exc.code, "invalid_request")
    return api_error(ApiError(kind, exc.description or exc.name, status=exc.code))


def _submit(engine_request: GenerateRequest, request_id: str) -> Generation:
    return services().engine.submit(engine_request, request_id=request_id)


def _sse(events: Iterator[str], generations: list[Generation], request_id: str) -> Response:
    def guarded() -> Iterator[str]:
        try:
            yield from events
        finally:  # the client went away or we finished: either way, free the slot
            for generation in generations:
                generation.cancel()
    response = Response(guarded(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["X-Request-Id"] = request_id
    return response


@bp.post("/v1/chat/completions")
@bp.post("/api/chat/completions")
def chat_completions():
    """Chat completion, JSON or SSE."""
    body = parse_body(ChatCompletionRequest, request.get_data())
    if body.stream_options is not None and not body.stream:
        raise ApiError("invalid_request", "stream_options is only allowed when stream is true", "stream_options")
    response_id = tr.new_id("chatcmpl")
    generation = _submit(tr.from_chat_request(body, request.path), response_id)
    created = tr.now()
    if not body.stream:
        result = collect(generation.model, generation)
        response = jsonify(tr.to_chat_completion(result, response_id, created))
        response.headers["X-Request-Id"] = response_id
        return response
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return _sse(_chat_events(generation, response_id, created, include_usage), [generation], response_id)


def _chat_events(generation: Generation, response_id: str, created: int, include_usage: bool) -> Iterator[str]:
    model = generation.model
    yield sse_event(tr.chat_chunk(response_id, created, model, {"role": "assistant", "content": ""},
                                  with_usage_field=include_usage))
    try:
        for chunk in generation:
            if chunk.text:
                yield sse_event(tr.chat_chunk(response_id, created, model, {"content": chunk.text},
                                              with_usage_field=include_usage))
            if chunk.finish_reason is not None:
                yield sse_event(tr.chat_chunk(response_id, created, model, {},
                                              tr.finish_reason(chunk.finish_reason), include_usage))
                if include_usage:
                    yield sse_event(tr.usage_chunk(response_id, created, model, "chat.completion.chunk",
                                                   chunk.usage))
    except EngineError as exc:
        yield sse_event(tr.error_body(from_engine_error(exc)))
        return
    yield DONE


@bp.post("/v1/completions")
def completions():
    """Text completion for one or several prompts, JSON or SSE."""
    body = parse_body(CompletionRequest, request.get_data())
    if body.stream_options is not None and not body.stream:
        raise ApiError("invalid_request", "stream_options is only allowed when stream is true", "stream_options")
    response_id = tr.new_id("cmpl")
    engine_requests = tr.from_completion_request(body, request.path)
    created = tr.now()
    if not body.stream:
        results, echoes = [], []
        for index, engine_request in enumerate(engine_requests):
            generation = _submit(engine_request, response_id if index == 0 else f"{response_id}-{index}")
            results.append(collect(generation.model, generation))
            echoes.append(_echo_text(engine_request, generation) if body.echo else "")
        response = jsonify(tr.to_completion(results, response_id, created, echoes))
        response.headers["X-Request-Id"] = response_id
        return response
    # Submit the first now so that its errors become a proper status; the rest follow in turn.
    first = _submit(engine_requests[0], response_id)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    started = [first]
    events = _completion_events(first, engine_requests, started, response_id, created, include_usage, body.echo)
    return _sse(events, started, response_id)


def _echo_text(engine_request: GenerateRequest, generation: Generation) -> str:
    if engine_request.prompt is not None:
        return engine_request.prompt
    return services().engine.detokenize(generation.model, generation.prompt_tokens)


def _completion_events(first: Generation, engine_requests: list[GenerateRequest], started: list[Generation],
                       response_id: str, created: int, include_usage: bool, echo: bool) -> Iterator[str]:
    prompt_tokens = completion_tokens = 0
    model = first.model
    try:
        for index, engine_request in enumerate(engine_requests):
            generation = first if index == 0 else _submit(engine_request, f"{response_id}-{index}")
            if index:
                started.append(generation)
            if echo:
                yield sse_event(tr.completion_chunk(response_id, created, model, index,
                                                    _echo_text(engine_request, generation),
                                                    with_usage_field=include_usage))
            for chunk in generation:
                if chunk.text or chunk.finish_reason is not None:
                    yield sse_event(tr.completion_chunk(response_id, created, model, index, chunk.text,
                                                        tr.finish_reason(chunk.finish_reason), include_usage))
                if chunk.usage is not None:
                    prompt_tokens += chunk.usage.prompt_tokens
                    completion_tokens += chunk.usage.completion_tokens
    except EngineError as exc:
        yield sse_event(tr.error_body(from_engine_error(exc)))
        return
    if include_usage:
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        yield sse_event(tr.usage_chunk(response_id, created, model, "text_completion", usage))
    yield DONE


@bp.get("/v1/models")
def list_models():
    """Every model in the catalogue."""
    data = [tr.model_card(spec.name, int(spec.modified_at.timestamp())) for spec in services().catalogue.all()]
    return jsonify({"object": "list", "data": data})


@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str):
    """One model by id."""
    spec = services().catalogue.get(model_id)
    if spec is None:
        raise ApiError("not_found", f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    return jsonify(tr.model_card(spec.name, int(spec.modified_at.timestamp())))
