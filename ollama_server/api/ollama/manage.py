"""Ollama model management: DELETE /api/delete, POST /api/copy (only the managed store is written)."""
from __future__ import annotations

from typing import Optional

from flask import Blueprint
from flask import Response
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import OLLAMA
from ollama_server.api.errors.handlers import install
from ollama_server.api.ollama import model_details as md
from ollama_server.api.validation import parse_body
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.store import ModelStoreError
from ollama_server.models.store import read_only_error
from ollama_server.services import services

bp = Blueprint("ollama_manage", __name__)
install(bp, OLLAMA)


class DeleteBody(BaseModel):
    """DELETE /api/delete (`name` is the legacy spelling of `model`)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    name: Optional[str] = None


class CopyBody(BaseModel):
    """POST /api/copy."""

    model_config = ConfigDict(extra="allow")

    source: Optional[str] = None
    destination: Optional[str] = None


def _empty_ok() -> Response:
    return Response(status=200)


def store_error(exc: ModelStoreError) -> ApiError:
    """The ApiError for a change the model store refused."""
    return ApiError(exc.kind, exc.message, param=exc.param, status={"forbidden": 403, "internal": 500}.get(exc.kind))


def remove(spec: ModelSpec) -> None:
    """Unload a managed or registered model, then forget it (a registered file itself is kept)."""
    svc = services()
    if spec.read_only:
        raise store_error(read_only_error(spec))
    try:
        svc.engine.unload(spec.name)
    except ModelNotFoundError:
        pass  # removed by someone else meanwhile; the store below decides
    try:
        svc.store.remove(spec)
    except ModelStoreError as exc:
        raise store_error(exc) from None


@bp.delete("/api/delete")
def delete():
    """Delete a model from the managed store, or forget a registration: 200 with an empty body."""
    body = parse_body(DeleteBody, request.get_data())
    remove(md.find(body.model or body.name))
    return _empty_ok()


@bp.post("/api/copy")
def copy():
    """Copy a model under a new name into the managed store (its GGUF hard-linked, not duplicated)."""
    body = parse_body(CopyBody, request.get_data())
    spec = md.find(body.source, param="source")
    if not isinstance(body.destination, str) or not body.destination:
        raise ApiError("invalid_request", "destination is required", param="destination")
    try:
        services().store.copy(spec, body.destination)
    except ModelStoreError as exc:
        raise store_error(exc) from None
    return _empty_ok()
