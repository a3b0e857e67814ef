"""OpenAI Responses HTTP wiring: parse, continue a stored conversation, submit, answer as JSON or response.* SSE."""
from __future__ import annotations

from functools import partial
from typing import Iterator

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask import stream_with_context

from ollama_server.api import client_gone
from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import OPENAI
from ollama_server.api.errors.handlers import install
from ollama_server.api.responses import translate as tr
from ollama_server.api.responses.events import ResponseStream
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.api.responses.store import ResponseStore
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import Message
from ollama_server.engine.types import collect
from ollama_server.services import services

bp = Blueprint("responses", __name__)
install(bp, OPENAI)
STORE_KEY = "openai_responses"


@bp.record_once
def _make_store(state) -> None:
    # One store per app: tests build many apps in one process, and each must start empty.
    state.app.extensions.setdefault(STORE_KEY, ResponseStore())


def response_store() -> ResponseStore:
    """This app's stored responses."""
    return current_app.extensions[STORE_KEY]


def _history(body: ResponsesRequest, store: ResponseStore) -> tuple[Message, ...]:
    if body.previous_response_id is None:
        return ()
    stored = store.get(body.previous_response_id)
    if stored is None:
        raise ApiError("not_found", f"Previous response with id '{body.previous_response_id}' not found.",
                       param="previous_response_id", code="previous_response_not_found")
    return stored.conversation


def _keep(store: ResponseStore, body: ResponsesRequest, turns: tuple[Message, ...], response: dict) -> None:
    if body.store is not False and response["status"] in ("completed", "incomplete"):
        store.put(response, turns + (tr.assistant_turn(response),))


@bp.post("/v1/responses")
def create_response():
    """A Response, as JSON or as the response.* SSE event sequence."""
    body = parse_body(ResponsesRequest, request.get_data())
    store = response_store()
    engine_request, turns = tr.from_request(body, _history(body, store), request.path,
                                            services().settings.default_max_tokens)
    response_id = tr.new_id("resp")
    request_id = client_gone.request_id(response_id)
    created = tr.now()
    message_id, reasoning_id = tr.new_id("msg"), tr.new_id("rs")
    generation = client_gone.submit(engine_request, request_id)
    if not body.stream:
        result = collect(generation.model, generation)
        payload = tr.to_response(body, result, response_id, created, message_id, reasoning_id)
        _keep(store, body, turns, payload)
        response = jsonify(payload)
        response.headers["X-Request-Id"] = request_id
        return response
    stream = ResponseStream(partial(tr.response_json, body, response_id, created, generation.model),
                            message_id, reasoning_id, tr.call_limit(body))
    events = _guarded(stream, generation, lambda final: _keep(store, body, turns, final))
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Request-Id": request_id})
    return response


def _guarded(stream: ResponseStream, generation: Generation, keep) -> Iterator[str]:
    try:
        yield from stream.events(generation)
        keep(stream.response)
    except EngineError as exc:  # after the 200: the failure goes out as response.failed
        yield from stream.fail(OPENAI.from_engine(exc))
    finally:  # the client went away or we finished: either way, free the slot
        generation.cancel()


def _stored(response_id: str):
    stored = response_store().get(response_id)
    if stored is None:
        raise ApiError("not_found", f"Response with id '{response_id}' not found.", param="response_id")
    return stored


@bp.get("/v1/responses/<response_id>")
def get_response(response_id: str):
    """A stored response, as it was answered."""
    if request.args.get("stream", "false").lower() not in ("false", "0"):
        raise ApiError("invalid_request", "stream: replaying a stored response as events is not supported",
                       param="stream")
    return jsonify(_stored(response_id).response)


@bp.delete("/v1/responses/<response_id>")
def delete_response(response_id: str):
    """Forget a stored response (a later previous_response_id naming it is a 404)."""
    _stored(response_id)
    response_store().delete(response_id)
    return jsonify({"id": response_id, "object": "response", "deleted": True})
