"""ConfigManager: validate runtime changes, version them in SQLite, apply them without a restart, roll back."""
from __future__ import annotations

import logging
import threading
from typing import Any
from typing import Callable
from typing import Mapping
from typing import Optional

from ollama_server.models.store import ModelStore
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.gpu import GpuSample
from ollama_server.runtime_config.changes import TUNABLES
from ollama_server.runtime_config.changes import ConfigError
from ollama_server.runtime_config.changes import current_values
from ollama_server.runtime_config.changes import diff
from ollama_server.runtime_config.changes import parse_changes
from ollama_server.runtime_config.changes import validate
from ollama_server.runtime_config.plan import PlanUnavailable
from ollama_server.runtime_config.plan import distribution
from ollama_server.runtime_config.plan import layout_of
from ollama_server.runtime_config.plan import preset_split
from ollama_server.runtime_config.presets import PRESETS
from ollama_server.settings import Settings
from ollama_server.storage.config_versions import ConfigVersions

log = logging.getLogger(__name__)


class VersionNotFound(LookupError):
    """No configuration version has that id."""


class ConfigManager:
    """The runtime configuration: `current()`, `apply()`, `apply_preset()`, `versions()`, `rollback()`,
    `preview()`. It reads and applies settings through callables, so it owns nothing of Services."""

    def __init__(self, get_settings: Callable[[], Settings], apply_settings: Callable[[Settings], None],
                 versions: ConfigVersions, gpu: GpuReader, store: ModelStore, engine: Any):
        self._get = get_settings
        self._apply = apply_settings
        self._versions = versions
        self._gpu = gpu
        self._store = store
        self._engine = engine  # default_model() and reload_status(), duck-typed: tests and services pass theirs
        self._startup = current_values(get_settings())
        self._lock = threading.Lock()  # one change at a time: a version must describe what was applied
        self._baseline_checked = False

    # --- reading ------------------------------------------------------------------------------
    def current(self) -> dict[str, Any]:
        """The tunables running now, by seed name."""
        return current_values(self._get())

    def startup(self) -> dict[str, Any]:
        """The tunables the process started with (the config file and environment): what a restart brings back."""
        return dict(self._startup)

    def reload_status(self) -> dict:
        """The engine's reload progress for the last applied configuration."""
        return self._engine.reload_status()

    @staticmethod
    def presets() -> list[dict[str, Any]]:
        """Every preset with its description and values."""
        return [preset.to_dict() for preset in PRESETS.values()]

    def versions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest versions first."""
        return self._versions.list(limit)

    # --- changing -----------------------------------------------------------------------------
    def apply(self, changes: Mapping, actor: str, source: str, note: str = "") -> dict[str, Any]:
        """Validate, record a version, apply; {"applied": version, "reload": status, "config": current}.
        ConfigError (nothing changed) naming each bad field."""
        return self._change(changes, actor, source, note, None)

    def apply_preset(self, name: str, actor: str, source: str, note: str = "",
                     overrides: Optional[Mapping] = None) -> dict[str, Any]:
        """Apply a preset's values (explicit `overrides` win) with the planner's tensor split for the GPUs now."""
        return self.apply(self._preset_changes(name, overrides or {}, self._gpu.read()), actor, source,
                          note or f"preset {name}")

    def rollback(self, version_id: int, actor: str, source: str) -> dict[str, Any]:
        """Re-apply the values stored in a version, recorded as a new version with rollback_of."""
        version = self._versions.get(version_id)
        if version is None:
            raise VersionNotFound(f"no configuration version {version_id}")
        changes = {key: version["values"][key] for key in TUNABLES if key in version["values"]}
        return self._change(changes, actor, "rollback", f"rollback to version {version_id} (via {source})",
                            version_id)

    def _change(self, changes: Mapping, actor: str, source: str, note: str,
                rollback_of: Optional[int]) -> dict[str, Any]:
        with self._lock:
            settings = self._get()
            new = validate(changes, settings, len(self._gpu.read()))
            before, after = current_values(settings), current_values(new)
            self._record_baseline()
            version = self._versions.record(actor, source, diff(before, after), after, note, rollback_of)
            self._apply(new)
        log.info("runtime configuration %d applied by %s (%s): %s", version["id"], actor, source,
                 version["changes"] or "no change")
        return {"applied": version, "reload": self._engine.reload_status(), "config": after}

    def _record_baseline(self) -> None:
        """Before the first change of this process: a version of the startup values, unless the newest
        version already holds them, so that a rollback to the start is always possible."""
        if self._baseline_checked:
            return
        latest = self._versions.latest()
        if latest is None or latest["values"] != self._startup:
            self._versions.record("system", "startup", {}, self._startup, "values at startup")
        self._baseline_checked = True

    def _preset_changes(self, name: Any, overrides: Mapping, gpus: list[GpuSample]) -> dict[str, Any]:
        preset = PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:
            raise ConfigError({"preset": f"unknown preset {str(name)[:50]!r}; use one of {', '.join(PRESETS)}"})
        changes = {**preset.values(), **overrides}
        parsed = parse_changes(changes, len(gpus))  # bad overrides are named before any planning
        if "tensor_split" not in changes:
            changes["tensor_split"] = self._planned_split(preset.split_preset, parsed, gpus)
        return changes

    def _planned_split(self, split_preset: str, parsed: dict[str, Any], gpus: list[GpuSample]) -> list[float]:
        """The planner's split for the default model; equal shares when it cannot be planned; [] with no GPU."""
        if not gpus:
            return []
        try:
            layout = layout_of(self._store, self._engine.default_model())
        except PlanUnavailable as exc:
            log.info("preset split: %s; equal shares instead", exc)
            return [round(1 / len(gpus), 6)] * len(gpus)
        return list(preset_split(layout, gpus, split_preset, parsed["default_context_size"],
                                 parsed["parallel_slots"], parsed["gpu_layers"]))

    # --- previewing ---------------------------------------------------------------------------
    def preview(self, changes: Mapping, model: Optional[str] = None) -> dict[str, Any]:
        """The weight distribution of the default (or named) model under the candidate values, without applying
        them: {"valid", "errors", "values", "changes", "plan", "plan_error"}; a "preset" key is expanded."""
        gpus = self._gpu.read()
        settings = self._get()
        out: dict[str, Any] = {"valid": True, "errors": {}, "values": None, "changes": {}, "plan": None,
                               "plan_error": None}
        try:
            if isinstance(changes, Mapping) and "preset" in changes:
                rest = {k: v for k, v in changes.items() if k != "preset"}
                changes = self._preset_changes(changes["preset"], rest, gpus)
            # Nothing to change previews what runs now.
            new = settings if isinstance(changes, Mapping) and not changes else validate(changes, settings, len(gpus))
            values = current_values(new)
        except ConfigError as exc:
            out.update(valid=False, errors=exc.errors)
            return out
        out.update(values=values, changes=diff(current_values(settings), values))
        try:
            spec = self._store.get(model) if model else self._engine.default_model()
            if spec is None and model:
                raise PlanUnavailable(f"model '{model}' not found")
            out["plan"] = distribution(layout_of(self._store, spec), gpus, values)
        except PlanUnavailable as exc:
            out["plan_error"] = str(exc)
        return out


def for_services(svc: Any, db_path: str) -> ConfigManager:
    """The manager of a Services: its settings read and swapped through it, versions in `db_path` (the
    metrics DB file)."""
    versions = ConfigVersions(db_path, busy_timeout_s=svc.settings.metrics_busy_timeout)
    return ConfigManager(lambda: svc.settings, svc.apply_settings, versions, svc.gpu, svc.store, svc.engine)
