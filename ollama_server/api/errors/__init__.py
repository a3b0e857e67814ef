"""ApiError: one error value every dialect renders its own way (rules in dialects.py, wiring in handlers.py)."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

from ollama_server.engine import types as engine_types

# kind -> HTTP status used when a dialect has no rule of its own.
DEFAULT_STATUS = {
    "invalid_request": 400,
    "not_found": 404,
    "too_large": 413,
    "busy": 429,
    "timeout": 408,
    "unavailable": 503,
    "load_failed": 500,
    "internal": 500,
    "unauthorized": 401,
    "method_not_allowed": 405,
    "not_implemented": 501,
}


@dataclass
class ApiError(Exception):
    """A request failed: what kind of failure, a message, and where in the request."""

    kind: str
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict = field(default_factory=dict)
    status: int | None = None  # overrides the dialect's mapping when set

    def __str__(self) -> str:
        return self.message


def from_engine_error(exc: engine_types.EngineError) -> ApiError:
    """The ApiError for an engine failure."""
    error = ApiError(exc.kind, exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, engine_types.BusyError):
        error.headers["Retry-After"] = str(exc.retry_after_s)
    return error

