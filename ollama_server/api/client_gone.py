"""Cancel a request's generations as soon as its client hangs up, queued or running, streaming or not.

Also the client's own `X-Request-Id`: a caller that names its request can dismiss it
(`POST /api/dismiss/<id>`) while it waits, before any response header has been sent.
"""
from __future__ import annotations

import re
from typing import Optional

from flask import Flask
from flask import Response
from flask import g
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.log_format import note_model
from ollama_server.log_format import note_request_id
from ollama_server.services import services

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def valid_request_id(value: str) -> bool:
    """True for an id a caller may give its request."""
    return bool(_REQUEST_ID.fullmatch(value))


def request_id(generated: str) -> str:
    """The caller's X-Request-Id when it sent one (validated), else `generated`."""
    given = request.headers.get("X-Request-Id")
    if given is None:
        note_request_id(generated)  # the log lines and the response's X-Request-ID carry the engine's id
        return generated
    if not valid_request_id(given):
        raise ApiError("invalid_request", "X-Request-Id must be 1 to 128 letters, digits or . _ : -",
                       param="X-Request-Id")
    return given


def _client_socket():
    # gunicorn and werkzeug both hand the connection to the app; the test client has none.
    return request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")


def cancel_when_client_leaves(generation: Generation) -> None:
    """Cancel `generation` (and the others of this request) when the client closes its connection."""
    watched: Optional[list[Generation]] = g.get("watched_generations")
    if watched is None:
        sock = _client_socket()
        if sock is None:
            return
        watched = g.watched_generations = []
        watch = services().connections
        g.connection_watch = (watch, watch.watch(sock, lambda: [each.cancel() for each in watched]))
    watched.append(generation)


def submit(engine_request: GenerateRequest, request_id: str) -> Generation:
    """Submit to the engine, mark the request as the engine's to record, and cancel it if the client leaves."""
    # Set before submitting: the engine records its own rejections, which api/refusals must not record again.
    g.reached_engine = True
    try:
        generation = services().engine.submit(engine_request, request_id=request_id)
    except EngineError:
        raise
    except Exception:
        g.reached_engine = False  # the engine records only EngineErrors: this 500 is the HTTP layer's to record
        raise
    note_model(generation.model)  # the resolved model, for this request's log lines
    cancel_when_client_leaves(generation)
    return generation


def reached_engine() -> bool:
    """True once this request was handed to the engine, which then keeps its record."""
    return bool(g.get("reached_engine"))


def init_app(app: Flask) -> None:
    """Stop watching when the response is closed (a stream's end), or at teardown if no response went out."""

    @app.after_request
    def unwatch_when_closed(response: Response) -> Response:
        held = g.pop("connection_watch", None)
        if held is not None:
            watch, token = held
            # The server closes the response before it closes (or reuses) the socket.
            response.call_on_close(lambda: watch.unwatch(token))
        return response

    @app.teardown_request
    def unwatch_on_failure(_exc) -> None:
        held = g.pop("connection_watch", None)
        if held is not None:
            held[0].unwatch(held[1])
