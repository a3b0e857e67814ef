"""Ollama model management: DELETE /api/delete, POST /api/copy (only the managed store is written)."""
from __future__ import annotations

import logging
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
from ollama_server.models import managed_store
from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.ollama_store import StoreError
from ollama_server.services import services

bp = Blueprint("ollama_manage", __name__)
install(bp, OLLAMA)
log = logging.getLogger(__name__)


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


def read_only_error(spec: ModelSpec) -> ApiError:
    """403 for a model the API may not change, naming where it lives."""
    where = {"directory": "from models_dir", "ollama": "from the external Ollama store (manifests_dir)",
             "default": "the embedded default model"}.get(spec.source, spec.source)
    return ApiError("forbidden", f"model '{spec.name}' is read-only ({where})", param="model", status=403)


def remove(spec: ModelSpec) -> None:
    """Unload a managed or registered model, then forget it (a registered file itself is kept)."""
    svc = services()
    if spec.read_only:
        raise read_only_error(spec)
    try:
        svc.engine.unload(spec.name)
    except ModelNotFoundError:
        pass  # removed by someone else meanwhile; the store below decides
    if spec.source == "registered":
        svc.registered.remove(spec.name)
    else:
        root = managed_store.root_for(svc.settings.data_dir)
        try:
            managed_store.delete(root, spec.manifest)
        except FileNotFoundError:
            raise ApiError("not_found", f"model '{spec.name}' not found", param="model") from None
        except StoreError as exc:
            raise ApiError("forbidden", str(exc), status=403) from None
    svc.catalogue.refresh()


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
        destination = names.normalize(body.destination)
    except names.InvalidModelName:
        raise ApiError("invalid_request", f"invalid model name {body.destination[:200]!r}",
                       param="destination") from None
    svc = services()
    existing = svc.catalogue.get(destination)
    if existing is not None and existing.read_only:
        raise read_only_error(existing)
    facts = md.info(spec)
    config = {"model_family": facts.architecture, "model_families": [facts.architecture] if facts.architecture
              else [], "model_type": facts.size_label, "file_type": facts.file_type}
    try:
        managed_store.copy(managed_store.root_for(svc.settings.data_dir), spec, destination, config)
    except StoreError as exc:
        raise ApiError("invalid_request", str(exc), param="destination") from None
    except OSError as exc:
        log.warning("copy %s -> %s failed: %s", spec.name, destination, exc)
        raise ApiError("internal", f"copy failed: {exc.strerror or exc}", status=500) from None
    svc.catalogue.refresh()
    return _empty_ok()
