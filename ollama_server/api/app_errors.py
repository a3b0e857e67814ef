"""App-wide HTTP errors (unknown route, wrong method, body too large) in the dialect the path implies."""
from __future__ import annotations

import logging

from flask import Flask
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def error_response(status: int, message: str):
    """OpenAI shape under /v1, Ollama's {"error": "..."} elsewhere."""
    if request.path.startswith("/v1/"):
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    else:
        body = {"error": message}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
