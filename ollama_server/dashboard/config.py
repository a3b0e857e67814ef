"""/dashboard/config: the runtime tunables with presets, the planner's weight distribution before applying,
apply without a restart (the model reloads in the background), and every version with one-click rollback."""
from __future__ import annotations

import re
from typing import Any
from typing import Mapping
from typing import Optional

from flask import render_template
from flask import request

from ollama_server.dashboard.alert_actions import actor
from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.export import table
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import version_of
from ollama_server.dashboard.fragments import with_version
from ollama_server.services import services

FIELDS = ("tensor_split", "gpu_layers", "context_size", "batch_size", "threads", "parallel_slots", "log_level")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_INTEGER = re.compile(r"-?[0-9]+")


def manager():
    return services().config


def form_changes(form: Mapping[str, str]) -> dict[str, Any]:
    """The form's text as the values the manager validates: integers where they read as integers, the raw
    text otherwise (so the manager's message names the field); tensor_split as the seed's comma text."""
    changes: dict[str, Any] = {}
    for name in FIELDS:
        if name not in form:
            continue
        text = form[name].strip()
        if name == "tensor_split":
            changes[name] = text
        else:
            changes[name] = int(text) if _INTEGER.fullmatch(text) else text
    return changes


def as_form(values: Mapping[str, Any]) -> dict[str, str]:
    """Running values as the form shows them."""
    out = {name: str(values.get(name, "")) for name in FIELDS}
    out["tensor_split"] = ",".join(f"{share:g}" for share in values.get("tensor_split") or [])
    return out


def panel_data(form: Optional[dict[str, str]] = None, preview: Optional[dict] = None, errors: Optional[dict] = None,
               message: str = "", kind: str = "", preset: str = "") -> dict[str, Any]:
    m = manager()
    current = m.current()
    form = form or as_form(current)
    if preview is None:
        preview = m.preview(form_changes(form))
    return {"form": form, "current": as_form(current), "preview": preview, "errors": errors or preview.get("errors") or {},
            "presets": m.presets(), "message": message, "message_kind": kind, "preset": preset, "log_levels": LOG_LEVELS,
            "gpu_count": len(services().gpu.read())}


def status_data() -> dict[str, Any]:
    """What runs now, the reload's progress, and what differs from the startup values (a restart brings
    those back: the config file and environment are the source of truth at start)."""
    m = manager()
    current, startup = m.current(), m.startup()
    differs = {name: startup[name] for name in FIELDS if current[name] != startup[name]}
    yaml_keys = {"context_size": "default_context_size"}
    snippet = "\n".join(f"{yaml_keys.get(name, name)}: {_yaml(current[name])}" for name in differs)
    return {"reload": m.reload_status(), "current": as_form(current), "startup": as_form(startup),
            "differs": list(differs), "yaml": snippet}


def _yaml(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{share:g}" for share in value) or '""'
    return str(value)


@table("config_versions")
def version_rows() -> list[dict[str, Any]]:
    return manager().versions(200)


def versions_data() -> dict[str, Any]:
    return {"versions": manager().versions(20)}


def _panel(data: dict[str, Any], status: int = 200):
    return render_template("partials/config_panel.html", part={**data, "version": version_of(data)}), status


@bp.get("/config")
def config():
    return render_template("pages/config.html", panel_part=with_version(panel_data()),
                           status_part=with_version(status_data()), versions_part=with_version(versions_data()))


@bp.get("/partials/config-status")
def config_status_partial():
    return render_fragment("config_status", status_data())


@bp.get("/partials/config-versions")
def config_versions_partial():
    return render_fragment("config_versions", versions_data())


@bp.post("/actions/config/preview")
def preview_config():
    """The planner's distribution for what the form says now (nothing is applied)."""
    form = {name: request.form.get(name, "") for name in FIELDS}
    return _panel(panel_data(form=form, preview=manager().preview(form_changes(form))))


@bp.post("/actions/config/preset")
def preview_preset():
    """Fill the form with a preset's values (and the planner's split for it), previewed; Apply applies it."""
    name = request.form.get("preset", "")
    preview = manager().preview({"preset": name})
    if not preview["valid"]:
        return _panel(panel_data(errors=preview["errors"], message=preview["errors"].get("preset", ""),
                                 kind="error"), 422)
    form = as_form(preview["values"])
    return _panel(panel_data(form=form, preview=preview, preset=name,
                             message=f"Preset {name.replace('_', ' ')}: review the distribution, then apply."))


@bp.post("/actions/config/apply")
def apply_config():
    """Validate and apply; a bad value comes back next to its field and nothing changes."""
    from ollama_server.runtime_config.changes import ConfigError
    form = {name: request.form.get(name, "") for name in FIELDS}
    note = request.form.get("note", "").strip()[:200]
    preset = request.form.get("preset", "")
    try:
        result = manager().apply(form_changes(form), actor(), "dashboard", note or (f"preset {preset}" if preset else ""))
    except ConfigError as exc:
        return _panel(panel_data(form=form, errors=exc.errors, message="Nothing was changed: fix the fields below.",
                                 kind="error"), 422)
    applied = result["applied"]
    changed = ", ".join(applied["changes"]) or "nothing (same values)"
    return _panel(panel_data(message=f"Applied version {applied['id']} ({changed}); loaded models reload in the "
                                     "background and requests move to them when ready.", kind="ok"))


@bp.post("/actions/config/rollback")
def rollback_config():
    from ollama_server.runtime_config.changes import ConfigError
    from ollama_server.runtime_config.manager import VersionNotFound
    text = request.form.get("version", "")
    try:
        result = manager().rollback(int(text), actor(), "dashboard")
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            return _panel(panel_data(errors=exc.errors, message=f"Version {text} cannot be applied now: {exc}",
                                     kind="error"), 422)
        return _panel(panel_data(message=f"version must be a number, got {text[:20]!r}", kind="error"), 422)
    except VersionNotFound as exc:
        return _panel(panel_data(message=str(exc), kind="error"), 404)
    return _panel(panel_data(message=f"Rolled back to version {text} (recorded as version "
                                     f"{result['applied']['id']}); loaded models reload in the background.", kind="ok"))
