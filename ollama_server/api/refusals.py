"""Request records for requests refused before the engine: validation errors, 401, 403, 413, 415, 500."""
from __future__ import annotations

import json
import logging
import time
from typing import Optional

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request

from ollama_server.api import client_gone
from ollama_server.services import services

log = logging.getLogger(__name__)

# Status -> error_kind, the ApiError kinds where one fits; any other status is "http_<status>".
KINDS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         413: "too_large", 415: "unsupported_media_type", 422: "invalid_request", 429: "busy"}

# A body is parsed again for its "model" only when it is this small: a refusal must stay cheap.
MODEL_PEEK_BYTES = 4096

# Probes and scrapes are not requests to serve: a 503 from /health while loading is no refusal.
# Probes and monitoring reads: a dashboard polling /gpu on a machine without a GPU (503) must not count as
# failing requests, or the error-rate alert and the health score would fire on the polling itself.
SKIPPED_PATHS = frozenset({"/health", "/metrics", "/gpu", "/system", "/api/alerts", "/api/metrics/dashboard",
                           "/api/metrics/gpu", "/api/metrics/apis", "/api/metrics/optimization"})

# The dashboard's pages and polls are not API requests: they never count in the API metrics.
DASHBOARD_PREFIX = "/dashboard"

# Blueprints that are a dialect; the others (tracking, registry, dashboards) take the dialect of their path.
BLUEPRINT_DIALECTS = {"openai": "openai", "vllm": "vllm", "ollama": "ollama", "ollama_manage": "ollama",
                      "ollama_pull": "ollama", "tgi": "tgi", "anthropic": "anthropic"}
VLLM_PATHS = frozenset({"/tokenize", "/detokenize", "/version"})
ANTHROPIC_PREFIX = "/v1/messages"
TGI_PATHS = frozenset({"/generate", "/generate_stream", "/info"})


def error_kind(status: int) -> str:
    """The record's error_kind for an HTTP status."""
    return KINDS.get(status, f"http_{status}")


def dialect_of(path: str, method: str, blueprint: Optional[str]) -> str:
    """The dialect a request spoke: its blueprint's when it matched a dialect route, else its path's."""
    if blueprint in BLUEPRINT_DIALECTS:  # /api/chat/completions is OpenAI's though it is under /api/
        return BLUEPRINT_DIALECTS[blueprint]
    if path.startswith(ANTHROPIC_PREFIX):  # an unknown route under it still speaks Anthropic
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    if path in VLLM_PATHS:
        return "vllm"
    if path in TGI_PATHS or (path == "/" and method == "POST"):
        return "tgi"
    if path.startswith("/api/") or path == "/":  # GET / is Ollama's liveness probe
        return "ollama"
    return "plain"  # the registry and other admin routes, answered in the plain error dialect


def endpoint_of() -> str:
    """The request path, or the route's rule when it has parameters (one endpoint per route, not per id)."""
    rule = request.url_rule
    if rule is not None and rule.arguments:
        return rule.rule
    return request.path


def model_of() -> str:
    """The body's top-level "model" when the body is small JSON, else ""."""
    length = request.content_length
    limit = min(MODEL_PEEK_BYTES, current_app.config.get("MAX_CONTENT_LENGTH") or MODEL_PEEK_BYTES)
    # No length (chunked) or a large one: never read or parse it again for a record.
    if not length or length > limit:
        return ""
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError):
        return ""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def record_refusal(response: Response) -> None:
    """Append the record of a refused request (the caller has checked that it is one)."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if client_gone.valid_request_id(given) else ""
    started = g.get("refusals_started")
    services().engine.records.append(
        request_id=request_id, dialect=dialect_of(request.path, request.method, request.blueprint),
        endpoint=endpoint_of(), model=model_of(), outcome="rejected", error_kind=error_kind(response.status_code),
        finish_reason=None, prompt_tokens=0, completion_tokens=0, cached_tokens=0, queue_s=None, ttft_s=None,
        duration_s=time.monotonic() - started if started is not None else 0.0, http_status=response.status_code)


def is_refusal(response: Response) -> bool:
    """True for an error answer to a request the engine never took (the engine records the ones it took)."""
    if response.status_code < 400 or client_gone.reached_engine():
        return False
    if request.path in SKIPPED_PATHS or request.endpoint == "static" or request.path.startswith(DASHBOARD_PREFIX):
        return False
    return True


def init_app(app: Flask) -> None:
    """Time every request from its start and record the refused ones. Register before every other check,
    so that the Host, Origin, API-key and Content-Type refusals are timed too."""

    @app.before_request
    def start_clock() -> None:
        g.refusals_started = time.monotonic()

    @app.after_request
    def record_refused(response: Response) -> Response:
        # The unexpected-exception handler's 500 comes through here too: Flask runs after_request on it.
        try:
            if is_refusal(response):
                record_refusal(response)
        except Exception:  # a record is never worth failing the answer for
            log.exception("could not record the refusal of %s %s", request.method, request.path)
        return response
