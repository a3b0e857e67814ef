"""Request bodies: raw bytes -> validated pydantic model, or an ApiError naming the bad field."""
from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from pydantic import ValidationError

from ollama_server.api.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)


def describe(exc: ValidationError) -> ApiError:
    """The first validation problem as an invalid_request ApiError."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return ApiError("invalid_request", f"invalid JSON in request body: {first['msg']}")
    location = ".".join(str(part) for part in first["loc"])
    if not location:
        return ApiError("invalid_request", f"request body: {first['msg']}")
    return ApiError("invalid_request", f"{location}: {first['msg']}", param=location)


def parse_body(model: type[Model], raw: bytes) -> Model:
    """Validate a JSON body strictly (no "5" for 5); unknown keys are kept, not rejected."""
    if not raw or not raw.strip():
        raise ApiError("invalid_request", "missing request body")
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise describe(exc) from None
