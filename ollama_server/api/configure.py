"""Runtime configuration routes: apply (the seed's /api/dashboard/configure), show, versions, rollback, preview."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import DEFAULT_STATUS
from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import Dialect
from ollama_server.api.errors.handlers import install
from ollama_server.runtime_config.changes import ConfigError
from ollama_server.runtime_config.manager import ConfigManager
from ollama_server.runtime_config.manager import VersionNotFound
from ollama_server.services import services
from ollama_server.storage.config_versions import MAX_LIMIT
from ollama_server.storage.config_versions import ConfigStoreError

ACTOR = SOURCE = "api"  # the dashboard calls the manager itself, as "dashboard"
MAX_NOTE = 500


@dataclass
class FieldsError(ApiError):
    """An ApiError that names each bad field."""

    fields: dict = field(default_factory=dict)


def config_body(error: ApiError, status: int) -> dict:
    """{"error": {"message", "type", "fields"}}: the dashboard shows each field's message beside its input."""
    fields = getattr(error, "fields", None) or ({error.param: error.message} if error.param else {})
    return {"error": {"message": error.message, "type": f"{error.kind}_error", "fields": fields}}


CONFIG = Dialect("config", DEFAULT_STATUS, config_body)
bp = Blueprint("configure", __name__)
install(bp, CONFIG)


def manager() -> ConfigManager:
    """The app's ConfigManager."""
    return services().config


def _body() -> dict:
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise FieldsError("invalid_request", "the body must be a JSON object", fields={"body": "must be a JSON object"})
    return body


def _invalid(exc: ConfigError) -> FieldsError:
    return FieldsError("invalid_request", f"invalid configuration: {exc}", fields=exc.errors)


def _guarded(call: Any) -> Any:
    """Run a manager call, its failures as API errors (never a 500)."""
    try:
        return call()
    except ConfigError as exc:
        raise _invalid(exc) from None
    except VersionNotFound as exc:
        raise FieldsError("not_found", str(exc), fields={"version": str(exc)}) from None
    except ConfigStoreError as exc:
        raise ApiError("unavailable", f"{exc}; nothing was changed", headers={"Retry-After": "2"}) from None


@bp.post("/api/dashboard/configure")
def configure():
    """Apply runtime changes (or a preset, explicit keys winning), versioned; models reload in the background."""
    body = dict(_body())
    note = body.pop("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise FieldsError("invalid_request", "invalid configuration",
                          fields={"note": f"must be text of at most {MAX_NOTE} characters"})
    if "preset" in body:
        preset = body.pop("preset")
        result = _guarded(lambda: manager().apply_preset(preset, ACTOR, SOURCE, note, overrides=body))
    else:
        result = _guarded(lambda: manager().apply(body, ACTOR, SOURCE, note))
    return jsonify(result)


@bp.get("/api/dashboard/config")
def show():
    """The tunables running now, the reload status and the presets."""
    config = manager()
    return jsonify({"config": config.current(), "reload": config.reload_status(), "presets": config.presets()})


@bp.get("/api/dashboard/config/versions")
def versions():
    """The newest versions first (`limit`, default 50)."""
    raw = request.args.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        raise FieldsError("invalid_request", "invalid limit",
                          fields={"limit": f"must be an integer from 1 to {MAX_LIMIT}, got {raw[:50]!r}"})
    return jsonify({"versions": _guarded(lambda: manager().versions(limit))})


@bp.post("/api/dashboard/config/rollback")
def rollback():
    """Re-apply the values of a version ({"version": id}), recorded as a new version."""
    version = _body().get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FieldsError("invalid_request", "invalid rollback",
                          fields={"version": "must be the integer id of a configuration version"})
    return jsonify(_guarded(lambda: manager().rollback(version, ACTOR, SOURCE)))


@bp.post("/api/dashboard/config/preview")
def preview():
    """The weight distribution the candidate changes would give the default (or `model`) model; nothing applied."""
    body = dict(_body())
    model = body.pop("model", None)
    if model is not None and not isinstance(model, str):
        raise FieldsError("invalid_request", "invalid preview", fields={"model": "must be a model name"})
    return jsonify(_guarded(lambda: manager().preview(body, model)))
