"""OpenAI HTTP wiring (vLLM extras included): parse, submit to the engine, answer as JSON or SSE."""
from __future__ import annotations

from typing import Iterator

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request
from flask import stream_with_context

from ollama_server.api import client_gone
from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.errors.dialects import OPENAI
from ollama_server.api.errors.handlers import install
from ollama_server.api.openai import tools as tool_api
from ollama_server.api.openai import translate as tr
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.streaming import sse_event
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import Usage
from ollama_server.engine.types import collect
from ollama_server.services import services

bp = Blueprint("openai", __name__)
install(bp, OPENAI)
DONE = "data: [DONE]\n\n"


def _choice_id(response_id: str, index: int) -> str:
    return response_id if index == 0 else f"{response_id}-{index}"


def _submit(engine_request: GenerateRequest, request_id: str) -> Generation:
    return client_gone.submit(engine_request, request_id)


def _collect_all(engine_requests: list[GenerateRequest], request_id: str) -> list[tuple[Generation, GenerateResult]]:
    """Run the choices one after another; any error surfaces before a byte is sent."""
    done = []
    for index, engine_request in enumerate(engine_requests):
        generation = _submit(engine_request, _choice_id(request_id, index))
        done.append((generation, collect(generation.model, generation)))
    return done


def _check_stream_options(body) -> bool:
    if body.stream_options is not None and not body.stream:
        raise ApiError("invalid_request", "stream_options is only allowed when stream is true", "stream_options")
    return bool(body.stream_options and body.stream_options.include_usage)


def _sse(events: Iterator[str], generations: list[Generation], request_id: str) -> Response:
    def guarded() -> Iterator[str]:
        try:
            yield from events
        finally:  # the client went away or we finished: either way, free the slot
            for generation in generations:
                generation.cancel()
    # Later choices (n > 1) are submitted while streaming: the request context must outlive the view.
    response = Response(stream_with_context(guarded()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["X-Request-Id"] = request_id
    return response


def _json(payload: dict, request_id: str) -> Response:
    response = jsonify(payload)
    response.headers["X-Request-Id"] = request_id
    return response


@bp.post("/v1/chat/completions")
@bp.post("/api/chat/completions")
def chat_completions():
    """Chat completion, JSON or SSE."""
    body = parse_body(ChatCompletionRequest, request.get_data())
    include_usage = _check_stream_options(body)
    response_id = tr.new_id("chatcmpl")
    request_id = client_gone.request_id(response_id)
    engine_requests = tr.from_chat_request(body, request.path, services().settings.default_max_tokens)
    created = tr.now()
    if not body.stream:
        results = [result for _, result in _collect_all(engine_requests, request_id)]
        return _json(tr.to_chat_completion(results, response_id, created), request_id)
    started = [_submit(engine_requests[0], request_id)]
    events = _chat_events(engine_requests, started, response_id, request_id, created, include_usage)
    return _sse(events, started, request_id)


def _chat_events(engine_requests: list[GenerateRequest], started: list[Generation], response_id: str,
                 request_id: str, created: int, include_usage: bool) -> Iterator[str]:
    model = started[0].model
    usage = Usage()

    def event(index: int, delta: dict, finish=None, logprobs=None) -> str:
        chunk = tr.chat_chunk(response_id, created, model, delta, finish, include_usage)
        chunk["choices"][0]["index"] = index
        chunk["choices"][0]["logprobs"] = logprobs
        return sse_event(chunk)

    try:
        for index, engine_request in enumerate(engine_requests):
            if index:
                started.append(_submit(engine_request, _choice_id(request_id, index)))
            generation = started[index]
            yield event(index, {"role": "assistant", "content": ""})
            calls = 0  # tool calls streamed so far: each gets the next index
            for chunk in generation:
                delta = {}
                if chunk.reasoning:
                    delta["reasoning_content"] = delta["reasoning"] = chunk.reasoning
                if chunk.text:
                    delta["content"] = chunk.text
                if delta:
                    yield event(index, delta, logprobs=tr.chat_logprobs(chunk.logprobs))
                for call in chunk.tool_calls:
                    for piece in tool_api.call_deltas(call, calls):
                        yield event(index, {"tool_calls": [piece]})
                    calls += 1
                if chunk.finish_reason is not None:
                    yield event(index, {}, tr.finish_reason(chunk.finish_reason, calls > 0))
                    usage = Usage(prompt_tokens=chunk.usage.prompt_tokens,
                                  completion_tokens=usage.completion_tokens + chunk.usage.completion_tokens,
                                  cached_tokens=chunk.usage.cached_tokens)
    except EngineError as exc:
        yield sse_event(tr.error_body(from_engine_error(exc)))
        return
    if include_usage:
        yield sse_event(tr.usage_chunk(response_id, created, model, "chat.completion.chunk", usage))
    yield DONE


@bp.post("/v1/completions")
def completions():
    """Text completion for one or several prompts (and n choices each), JSON or SSE."""
    body = parse_body(CompletionRequest, request.get_data())
    include_usage = _check_stream_options(body)
    response_id = tr.new_id("cmpl")
    request_id = client_gone.request_id(response_id)
    engine_requests = tr.from_completion_request(body, request.path)
    prompt_count = len(engine_requests) // body.n
    created = tr.now()
    if not body.stream:
        done = _collect_all(engine_requests, request_id)
        echoes = [_echo_text(req, gen) if body.echo else "" for req, (gen, _) in zip(engine_requests, done)]
        payload = tr.to_completion([r for _, r in done], response_id, created, echoes, prompt_count)
        return _json(payload, request_id)
    # Submit the first now so that its errors become a proper status; the rest follow in turn.
    started = [_submit(engine_requests[0], request_id)]
    events = _completion_events(engine_requests, started, response_id, request_id, created, include_usage, body)
    return _sse(events, started, request_id)


def _echo_text(engine_request: GenerateRequest, generation: Generation) -> str:
    if engine_request.prompt is not None:
        return engine_request.prompt
    return services().engine.detokenize(generation.model, generation.prompt_tokens)


def _completion_events(engine_requests: list[GenerateRequest], started: list[Generation], response_id: str,
                       request_id: str, created: int, include_usage: bool, body: CompletionRequest) -> Iterator[str]:
    prompt_tokens = completion_tokens = 0
    model = started[0].model
    try:
        for index, engine_request in enumerate(engine_requests):
            if index:
                started.append(_submit(engine_request, _choice_id(request_id, index)))
            generation = started[index]
            offset = 0
            if body.echo:
                echo = _echo_text(engine_request, generation)
                offset = len(echo)
                yield sse_event(tr.completion_chunk(response_id, created, model, index, echo,
                                                    with_usage_field=include_usage))
            for chunk in generation:
                if chunk.text or chunk.finish_reason is not None:
                    event = tr.completion_chunk(response_id, created, model, index, chunk.text,
                                                tr.finish_reason(chunk.finish_reason), include_usage)
                    event["choices"][0]["logprobs"] = tr.completion_logprobs(chunk.logprobs, offset)
                    offset += len(chunk.text)
                    yield sse_event(event)
                if chunk.usage is not None:
                    if index % body.n == 0:
                        prompt_tokens += chunk.usage.prompt_tokens
                    completion_tokens += chunk.usage.completion_tokens
    except EngineError as exc:
        yield sse_event(tr.error_body(from_engine_error(exc)))
        return
    if include_usage:
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        yield sse_event(tr.usage_chunk(response_id, created, model, "text_completion", usage))
    yield DONE


def _card(spec) -> dict:
    context = services().engine.runtime_context(spec)
    return tr.model_card(spec.name, int(spec.modified_at.timestamp()), spec.path, context)


@bp.get("/v1/models")
def list_models():
    """Every model in the catalogue, with its runtime context length (vLLM's max_model_len)."""
    return jsonify({"object": "list", "data": [_card(spec) for spec in services().catalogue.all()]})


@bp.get("/v1/models/<path:model_id>")
def get_model(model_id: str):
    """One model by id."""
    spec = services().catalogue.get(model_id)
    if spec is None:
        raise ApiError("not_found", f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    return jsonify(_card(spec))
