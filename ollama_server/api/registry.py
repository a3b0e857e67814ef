"""The seed service's model registry routes: /models/register, /models/set_active, /models/active, /models."""
from __future__ import annotations

from typing import Any
from typing import Optional

from flask import Blueprint
from flask import jsonify
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.api.ollama.manage import store_error
from ollama_server.api.validation import parse_body
from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.store import ModelStoreError
from ollama_server.services import services

bp = Blueprint("registry", __name__)
install(bp, PLAIN)


class RegisterBody(BaseModel):
    """POST /models/register."""

    model_config = ConfigDict(extra="allow")

    name: Optional[str] = None
    path: Optional[str] = None


class ActiveBody(BaseModel):
    """POST /models/set_active (`name` accepted as an alias of `model`)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    name: Optional[str] = None


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError("invalid_request", f"{param} is required", param=param)
    try:
        return names.normalize(value)
    except names.InvalidModelName:
        raise ApiError("invalid_request", f"invalid model name {value[:200]!r}", param=param) from None


def model_entry(spec: ModelSpec, active: Optional[str]) -> dict:
    """One model as GET /models lists it: where it comes from and what its GGUF says."""
    return {"name": spec.name, "source": spec.source, "path": spec.path, "size": spec.size_bytes,
            "modified_at": spec.modified_at.isoformat(), "digest": spec.digest, "read_only": spec.read_only,
            "active": spec.name == active, "inspection": services().store.info(spec).summary()}


@bp.post("/models/register")
def register():
    """Register an existing .gguf file under a name: 201 with the entry."""
    body = parse_body(RegisterBody, request.get_data())
    svc = services()
    try:
        spec = svc.store.register(_name(body.name, "name"), body.path)
    except ModelStoreError as exc:
        raise store_error(exc) from None
    return jsonify(model_entry(spec, svc.store.active.get())), 201


@bp.post("/models/set_active")
def set_active():
    """Make a model the one used when a request names none (persisted across restarts)."""
    body = parse_body(ActiveBody, request.get_data())
    name = _name(body.model or body.name, "model")
    try:
        services().store.set_active(name)
    except ModelStoreError as exc:
        raise store_error(exc) from None
    return jsonify({"active": name})


@bp.get("/models/active")
def active():
    """The model used when a request names none, and whether it was chosen or is the smallest."""
    svc = services()
    chosen = svc.store.active.get()
    spec = svc.engine.default_model()
    return jsonify({"active": spec.name if spec else None,
                    "chosen": chosen if chosen and svc.catalogue.get(chosen) else None})


@bp.get("/models")
def list_models():
    """The catalogue with each model's source, path, size and inspection summary."""
    svc = services()
    svc.catalogue.refresh()
    chosen = svc.engine.default_model()
    active_name = chosen.name if chosen else None
    return jsonify({"models": [model_entry(spec, active_name) for spec in svc.catalogue.all()],
                    "active": active_name})
