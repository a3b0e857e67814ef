"""The model registry routes: /models/register (GGUF files and Hugging Face checkpoints), /models/set_active,
/models/active, /models — ours and the companion seed's field names both."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from typing import Optional

from flask import Blueprint
from flask import jsonify
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import COMPANION
from ollama_server.api.errors.handlers import install
from ollama_server.api.ollama.manage import store_error
from ollama_server.api.validation import parse_body
from ollama_server.jobs.convert import ConversionError
from ollama_server.jobs.convert import check_ready
from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.store import ModelStoreError
from ollama_server.services import Services
from ollama_server.services import services

bp = Blueprint("registry", __name__)
install(bp, COMPANION)


class RegisterBody(BaseModel):
    """POST /models/register: `name`+`path` (ours) or the seed's `id`, `source`, `tags`; `outtype` for a
    checkpoint (f16 or q8_0)."""

    model_config = ConfigDict(extra="allow")

    name: Optional[str] = None
    id: Optional[str] = None
    path: Optional[str] = None
    source: Optional[str] = None
    tags: Optional[str] = None
    outtype: str = "f16"


class ActiveBody(BaseModel):
    """POST /models/set_active (`name` and the seed's `id` accepted as aliases of `model`)."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    name: Optional[str] = None
    id: Optional[str] = None


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError("invalid_request", f"{param} is required", param=param)
    try:
        return names.normalize(value)
    except names.InvalidModelName:
        raise ApiError("invalid_request", f"invalid model name {value[:200]!r}", param=param) from None


def model_roots(svc: Services) -> list[Path]:
    """Where checkpoints may be registered from: the configured models directories, else <base_dir>/models."""
    roots = [Path(p) for p in svc.settings.models_dir]
    if svc.jobs is not None:
        roots.append(svc.jobs.paths.models_dir)
    return roots


def _inside(path: Path, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == Path(os.path.realpath(r)) or Path(os.path.realpath(r)) in real.parents for r in roots)


def _target(svc: Services, model_id: str, path: Optional[str]) -> Path:
    """The file or directory to register: `path` (relative to the first models directory), else <root>/<id>."""
    roots = model_roots(svc)
    if not roots:
        raise ApiError("invalid_request", "path is required (no models directory is configured)", param="path")
    if path:
        return Path(path) if os.path.isabs(path) else roots[0] / path
    for root in roots:
        for candidate in (root / model_id, root / f"{model_id}.gguf"):
            if candidate.exists():
                return candidate
    raise ApiError("not_found", f"nothing to register: neither {roots[0] / model_id} nor "
                                f"{roots[0] / (model_id + '.gguf')} exists (copy the checkpoint there first)",
                   param="id")


def model_entry(spec: ModelSpec, active: Optional[str], notes: Optional[dict] = None) -> dict:
    """One model as GET /models lists it: ours (name, source, inspection) and the seed's (id, created_at, tags,
    is_active)."""
    note = (notes or {}).get(spec.name) or {}
    return {"name": spec.name, "id": spec.name, "source": note.get("source") or spec.source, "path": spec.path,
            "size": spec.size_bytes, "modified_at": spec.modified_at.isoformat(), "digest": spec.digest,
            "read_only": spec.read_only, "active": spec.name == active, "is_active": spec.name == active,
            "created_at": note.get("created_at") or spec.modified_at.replace(tzinfo=None).isoformat(
                timespec="seconds"),
            "tags": note.get("tags"), "inspection": services().store.info(spec).summary()}


def _notes(svc: Services) -> dict:
    return svc.jobs.store.model_notes() if svc.jobs is not None else {}


def _convert(svc: Services, model_id: str, checkpoint: Path, body: RegisterBody):
    """Queue a checkpoint's conversion; nothing is registered until it has succeeded."""
    if svc.jobs is None:
        raise ApiError("unavailable", "jobs are not configured on this server")
    if not _inside(checkpoint, model_roots(svc)):
        raise ApiError("invalid_request", "a checkpoint must be inside the models directory "
                                          f"({', '.join(str(r) for r in model_roots(svc))})", param="path")
    try:
        check_ready(checkpoint, body.outtype, svc.settings.converter_dir)
    except ConversionError as exc:
        raise ApiError("invalid_request", exc.message, param="path", status=exc.status) from None
    job = svc.jobs.submit("convert", model_id, {"id": model_id, "checkpoint": str(checkpoint),
                                                 "outtype": body.outtype, "source": body.source,
                                                 "tags": body.tags}, name=f"convert {model_id}")
    svc.jobs.store.note_model(model_id, body.source, body.tags, str(checkpoint))
    return jsonify({"status": "converting", "id": model_id, "job_id": job["job_id"], "path": str(checkpoint),
                    "outtype": body.outtype}), 202


@bp.post("/models/register")
def register():
    """Register a .gguf file (201), or queue a Hugging Face checkpoint's conversion to GGUF (202 and its job)."""
    body = parse_body(RegisterBody, request.get_data())
    svc = services()
    seed_form = body.id is not None and body.name is None
    name = _name(body.name or body.id, "id" if seed_form else "name")
    if seed_form and svc.catalogue.get(name) is not None:
        raise ApiError("invalid_request", f"Model {name} already registered", param="id")
    if not seed_form and not body.path:
        raise ApiError("invalid_request", "path is required (or the seed's id alone: <models_dir>/<id>)",
                       param="path")
    target = _target(svc, name, body.path) if (seed_form or not os.path.isabs(body.path)) else Path(body.path)
    if target.is_dir():
        ggufs = sorted(target.glob("*.gguf"))
        if (target / "config.json").exists() and not ggufs:
            return _convert(svc, name, target, body)
        if len(ggufs) != 1:
            raise ApiError("invalid_request", f"{target} holds no Hugging Face checkpoint (config.json) and "
                                              f"{len(ggufs)} .gguf files; name the file in path", param="path")
        target = ggufs[0]
    try:
        spec = svc.store.register(name, str(target))
    except ModelStoreError as exc:
        raise store_error(exc) from None
    if svc.jobs is not None:
        svc.jobs.store.note_model(spec.name, body.source, body.tags, str(target))
    return jsonify({"status": "registered", **model_entry(spec, svc.store.active.get(), _notes(svc))}), 201


@bp.post("/models/set_active")
def set_active():
    """Make a model the one used when a request names none (persisted across restarts)."""
    body = parse_body(ActiveBody, request.get_data())
    name = _name(body.model or body.name or body.id, "model")
    try:
        services().store.set_active(name)
    except ModelStoreError as exc:
        if exc.kind == "not_found":
            raise ApiError("not_found", f"Model {name} not found", param="id") from None
        raise store_error(exc) from None
    return jsonify({"active": name, "status": "activated", "id": name})


@bp.get("/models/active")
def active():
    """The model used when a request names none, and whether it was chosen or is the smallest."""
    svc = services()
    chosen = svc.store.active.get()
    spec = svc.engine.default_model()
    if spec is None:
        raise ApiError("not_found", "No active model")
    return jsonify({"active": spec.name, "id": spec.name, "path": spec.path,
                    "chosen": chosen if chosen and svc.catalogue.get(chosen) else None})


@bp.get("/models")
def list_models():
    """The catalogue with each model's source, path, size and inspection summary."""
    svc = services()
    svc.catalogue.refresh()
    chosen = svc.engine.default_model()
    active_name = chosen.name if chosen else None
    notes = _notes(svc)
    return jsonify({"models": [model_entry(spec, active_name, notes) for spec in svc.catalogue.all()],
                    "active": active_name})
