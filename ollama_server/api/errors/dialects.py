"""Each dialect's error rules in one place: kind -> status table, body renderer, extra headers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Mapping

from flask import Response
from flask import g
from flask import jsonify

from ollama_server.api.anthropic import translate as anthropic_tr
from ollama_server.api.errors import DEFAULT_STATUS
from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.ollama import translate as ollama_tr
from ollama_server.api.openai import translate as openai_tr
from ollama_server.api.streaming import dumps
from ollama_server.api.tgi import translate as tgi_tr
from ollama_server.engine.types import EngineError

TGI_OVERLOADED = "Model is overloaded"  # TGI's wording for every busy answer, whatever the engine said
VLLM_TYPES = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError", 429: "TooManyRequestsError",
              503: "ServiceUnavailableError"}


def json_response(payload: Any, status: int) -> Response:
    """Flask's JSON (keys sorted)."""
    response = jsonify(payload)
    response.status_code = status
    return response


def ordered_json_response(payload: Any, status: int) -> Response:
    """JSON in the payload's own field order (Ollama's clients compare raw bodies)."""
    return Response(dumps(payload), status=status, content_type="application/json; charset=utf-8")


def own_headers(error: ApiError) -> dict:
    """The headers the error carries (Retry-After on busy)."""
    return dict(error.headers)


def http_kind(code: int) -> str:
    """The ApiError kind for a werkzeug HTTP error's status."""
    return {413: "too_large", 404: "not_found", 405: "method_not_allowed"}.get(code, "invalid_request")


@dataclass(frozen=True)
class Dialect:
    """How one dialect answers a failed request.

    `body(error, status)` makes the payload and `respond(payload, status)` the Response, so a renderer
    that is not JSON (see `html_dialect`) plugs in the same way."""

    name: str
    statuses: Mapping[str, int]                       # kind -> HTTP status
    body: Callable[[ApiError, int], Any]
    respond: Callable[[Any, int], Response] = json_response
    headers: Callable[[ApiError], dict] = own_headers
    http_kind: Callable[[int], str] = http_kind
    from_engine: Callable[[EngineError], ApiError] = from_engine_error
    fallback: int = 500                               # status of a kind the table lacks

    def status_of(self, error: ApiError) -> int:
        """The error's own status when set, else the table's."""
        return error.status or self.statuses.get(error.kind, self.fallback)

    def from_http(self, exc) -> ApiError:
        """The ApiError for a werkzeug HTTPException (its status kept)."""
        return ApiError(self.http_kind(exc.code), exc.description or exc.name, status=exc.code)

    def render(self, error: ApiError) -> Response:
        """The whole answer: status, body, headers."""
        status = self.status_of(error)
        response = self.respond(self.body(error, status), status)
        response.headers.update(self.headers(error))
        return response


# --- OpenAI and vLLM ---------------------------------------------------------------------------
OPENAI = Dialect("openai", DEFAULT_STATUS, lambda error, status: openai_tr.error_body(error))


def vllm_body(error: ApiError, status: int) -> dict:
    """vLLM's error object: the OpenAI shape with the HTTP status as `code`."""
    return {"error": {"message": error.message, "type": VLLM_TYPES.get(status, "InternalServerError"),
                      "param": error.param, "code": status}}


# vLLM's handler has never sent the error's headers (no Retry-After); kept as it was.
VLLM = Dialect("vllm", DEFAULT_STATUS, vllm_body, headers=lambda error: {})


# --- Ollama and the plain admin routes -----------------------------------------------------------
def ollama_headers(error: ApiError) -> dict:
    """The error's headers, plus X-Request-Id once a generate/chat request has one."""
    headers = own_headers(error)
    if g.get("ollama_request_id"):
        headers["X-Request-Id"] = g.ollama_request_id
    return headers


# Busy is 503 here, as Ollama itself answers a full queue; the other dialects say 429.
OLLAMA = Dialect("ollama", {**DEFAULT_STATUS, "busy": 503}, lambda error, status: ollama_tr.error_body(error.message),
                 respond=ordered_json_response, headers=ollama_headers)

# Registry, weight distribution, request tracking and app-wide errors off /v1: {"error": "..."}, sorted JSON.
PLAIN = Dialect("plain", DEFAULT_STATUS, lambda error, status: {"error": error.message})
# The training-loop companion API (seed §5): FastAPI's {"detail"}; "error" too, for clients of our other routes.
COMPANION = Dialect("companion", DEFAULT_STATUS,
                    lambda error, status: {"detail": error.message, "error": error.message})


# --- TGI ------------------------------------------------------------------------------------------
def tgi_body(error: ApiError, status: int) -> dict:
    """TGI's {"error", "error_type"}, the type following the kind (not the status)."""
    message = TGI_OVERLOADED if error.kind == "busy" else error.message
    return tgi_tr.error_body(message, tgi_tr.error_status(error.kind)[1])


def tgi_from_engine(exc: EngineError) -> ApiError:
    """TGI's wording for too-long inputs, and Retry-After on any busy error."""
    error = ApiError(exc.kind, tgi_tr.error_message(exc))
    if exc.kind == "busy":
        error.headers["Retry-After"] = str(getattr(exc, "retry_after_s", 1))
    return error


def tgi_http_kind(code: int) -> str:
    """A kind whose TGI error_type is right for the status: validation below 500, generation from 500."""
    return "invalid_request" if code < 500 else "internal"


# The table is tgi_tr.error_status's, so that the status and the error_type cannot drift apart.
# Its fallback (424, a generation error) is error_status's answer for any kind it does not name.
TGI = Dialect("tgi", {kind: tgi_tr.error_status(kind)[0] for kind in DEFAULT_STATUS}, tgi_body,
              http_kind=tgi_http_kind, from_engine=tgi_from_engine, fallback=tgi_tr.error_status("")[0])


# --- Anthropic Messages ---------------------------------------------------------------------------
def anthropic_headers(error: ApiError) -> dict:
    """The error's headers, plus request-id (what the SDK reads) once the request has one."""
    headers = own_headers(error)
    if g.get("anthropic_request_id"):
        headers["request-id"] = g.anthropic_request_id
    return headers


# Busy is 529 overloaded_error, as Anthropic answers; it has no 503, and "try again later" is what both mean.
ANTHROPIC = Dialect("anthropic", {**DEFAULT_STATUS, "busy": 529, "unavailable": 529}, anthropic_tr.error_body,
                    headers=anthropic_headers)


# --- HTML: the seam for the dashboard's error pages ------------------------------------------------
def html_response(page: str, status: int) -> Response:
    """An HTML page as the answer."""
    return Response(page, status=status, content_type="text/html; charset=utf-8")


def html_dialect(page: Callable[[ApiError, int], str], name: str = "html") -> Dialect:
    """A dialect answering with an HTML page made by `page(error, status)`.

    A dashboard blueprint calls `install(bp, html_dialect(render))`; to have app-wide errors (unknown
    route, 405, 413, 500) under its prefix render as pages too, it adds (prefix, dialect) to APP_WIDE."""
    return Dialect(name, DEFAULT_STATUS, page, respond=html_response)


# --- app-wide errors: the dialect a path implies -------------------------------------------------
# First matching prefix wins; anything else gets PLAIN.
APP_WIDE: list[tuple[str, Dialect]] = [("/v1/messages", ANTHROPIC), ("/v1/", OPENAI)]


def for_path(path: str) -> Dialect:
    """The dialect an app-wide error under `path` answers in."""
    return next((dialect for prefix, dialect in APP_WIDE if path.startswith(prefix)), PLAIN)
