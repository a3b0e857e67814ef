"""Error wiring: a dialect's handlers on a blueprint, and the app-wide ones that pick the dialect by path."""
from __future__ import annotations

import logging

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import request
from werkzeug.exceptions import HTTPException

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import Dialect
from ollama_server.api.errors.dialects import for_path
from ollama_server.engine.types import EngineError

log = logging.getLogger(__name__)


def install(blueprint: Blueprint, dialect: Dialect) -> None:
    """Answer the blueprint's ApiErrors, EngineErrors and HTTP errors in `dialect`.

    Call it where the blueprint is made: Flask refuses new handlers once a blueprint is registered."""
    blueprint.register_error_handler(ApiError, dialect.render)
    blueprint.register_error_handler(EngineError, lambda exc: dialect.render(dialect.from_engine(exc)))
    blueprint.register_error_handler(HTTPException, lambda exc: dialect.render(dialect.from_http(exc)))


def error_response(status: int, message: str) -> Response:
    """An error outside any blueprint's handlers (browser guard, unknown route) in the dialect of the path."""
    # Only ever not_found or invalid_request here: the app-wide OpenAI body has always said
    # not_found_error for 404 and invalid_request_error for every other status (405 and 500 too).
    kind = "not_found" if status == 404 else "invalid_request"
    return for_path(request.path).render(ApiError(kind, message, status=status))


def init_app(app: Flask) -> None:
    """App-wide: unknown route, wrong method, body too large, and any unexpected exception (a 500, logged)."""
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
