"""Each request's log context: its id (the caller's X-Request-ID, else a new one), dialect, endpoint, client
address and model, read by every log line written while it is served; its id on every response's X-Request-ID.

A generation route that books its request under its own id (client_gone.request_id) renames the context, so the
log lines, the response header and the engine's records carry the same id.
"""
from __future__ import annotations

from typing import Any
from typing import Iterable
from typing import Iterator
from typing import Optional

from flask import Flask
from flask import Response
from flask import request

from ollama_server import log_format
from ollama_server.api import client_gone
from ollama_server.api import refusals
from ollama_server.log_format import LogContext
from ollama_server.log_format import note_model

# note_model, re-exported: the routes' way to name their model.
__all__ = ["init_app", "api_of", "given_request_id", "current_request_id", "note_model"]
HEADER = "X-Request-ID"
DASHBOARD_PREFIXES = ("/dashboard", "/api/dashboard")  # its pages and JSON actions speak no client's dialect


def api_of() -> str:
    """The request's `api` in log lines: the dialect its metrics count it under, or "dashboard"."""
    if request.path.startswith(DASHBOARD_PREFIXES):
        return "dashboard"
    return refusals.dialect_of(request.path, request.method, request.blueprint)


def given_request_id() -> Optional[str]:
    """The caller's X-Request-ID (any case) when it is a valid id, else None (a fresh one is made)."""
    given = request.headers.get(HEADER)
    return given if given is not None and client_gone.valid_request_id(given) else None


def current_request_id() -> Optional[str]:
    """The id the current request is logged under."""
    context = log_format.current_request()
    return context.request_id if context is not None else None


class _Carrying:
    """A streamed body that logs under its request while each piece is made (the view has returned by then)."""

    def __init__(self, body: Iterable[Any], context: LogContext):
        self._body = body
        self._pieces: Iterator[Any] = iter(body)
        self._context = context

    def __iter__(self) -> "_Carrying":
        return self

    def __next__(self) -> Any:
        log_format.begin_request(self._context)
        try:
            return next(self._pieces)
        finally:
            log_format.begin_request(None)  # between pieces this thread serves no request

    def close(self) -> None:
        # The server closes the body when the client leaves: the route's generator must hear it.
        close = getattr(self._body, "close", None) or getattr(self._pieces, "close", None)
        if close is not None:
            close()


def init_app(app: Flask) -> None:
    """Open the log context before every request, stamp X-Request-ID on its response, close it at teardown."""

    @app.before_request
    def open_log_context() -> None:
        context = LogContext(api=api_of(), endpoint=refusals.endpoint_of(), remote_addr=request.remote_addr)
        given = given_request_id()
        if given is not None:
            context.name(given)
        log_format.begin_request(context)

    @app.after_request
    def stamp_request_id(response: Response) -> Response:
        context = log_format.current_request()
        if context is None:
            return response
        if HEADER not in response.headers:  # a route's own X-Request-Id is this id already
            response.headers[HEADER] = context.request_id
        if response.is_streamed and not response.direct_passthrough:
            response.response = _Carrying(response.response, context)
        return response

    @app.teardown_request
    def close_log_context(_exc: Optional[BaseException]) -> None:
        log_format.begin_request(None)
