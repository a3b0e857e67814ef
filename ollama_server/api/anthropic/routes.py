"""Anthropic Messages HTTP wiring: parse, submit to the engine, answer as a Message or as named SSE events."""
from __future__ import annotations

from typing import Iterator

from flask import Blueprint
from flask import Response
from flask import g
from flask import jsonify
from flask import request
from flask import stream_with_context

from ollama_server.api import client_gone
from ollama_server.api.anthropic import translate as tr
from ollama_server.api.anthropic.events import MessageStream
from ollama_server.api.anthropic.events import error_event
from ollama_server.api.anthropic.schemas import CountTokensRequest
from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.errors.dialects import ANTHROPIC
from ollama_server.api.errors.handlers import install
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import collect
from ollama_server.services import services

bp = Blueprint("anthropic", __name__)
install(bp, ANTHROPIC)


def _ids(request_id: str) -> dict:
    # X-Request-Id as every dialect here sends it; request-id is the header Anthropic's SDKs read.
    return {"X-Request-Id": request_id, "request-id": request_id}


@bp.post("/v1/messages")
def messages():
    """A Message, as JSON or as Anthropic's SSE event sequence."""
    body = parse_body(MessagesRequest, request.get_data())
    message_id = tr.new_message_id()
    request_id = client_gone.request_id(message_id)
    g.anthropic_request_id = request_id
    engine_request, think = tr.from_messages_request(body, request.path)
    generation = client_gone.submit(engine_request, request_id)
    if not body.stream:
        result = collect(generation.model, generation)
        response = jsonify(tr.to_message(result, message_id, think.show))
        response.headers.update(_ids(request_id))
        return response
    stream = MessageStream(message_id, generation.model, len(generation.prompt_tokens), think.show)
    response = Response(stream_with_context(_guarded(stream, generation)), mimetype="text/event-stream")
    response.headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_ids(request_id)})
    return response


def _guarded(stream: MessageStream, generation: Generation) -> Iterator[str]:
    try:
        yield from stream.events(generation)
    except EngineError as exc:  # after the 200: the failure goes out as an error event
        error = ANTHROPIC.from_engine(exc)
        yield error_event(error, ANTHROPIC.status_of(error))
    finally:  # the client went away or we finished: either way, free the slot
        generation.cancel()


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """The input tokens a Messages request with this body would be given: its rendered prompt, tokenized."""
    body = parse_body(CountTokensRequest, request.get_data())
    _, tokens = services().engine.prompt_tokens(tr.from_count_request(body, request.path))
    return jsonify({"input_tokens": len(tokens)})
