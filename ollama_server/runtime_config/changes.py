"""The settings that change at run time (seed names), and their validation into a new Settings."""
from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import Mapping
from typing import Optional

from ollama_server.settings import SETTINGS_BY_NAME
from ollama_server.settings import Settings
from ollama_server.settings import SettingsError
from ollama_server.settings import build_settings


class ConfigError(ValueError):
    """Runtime changes that cannot be applied: one message per bad field (nothing was changed)."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{key}: {message}" for key, message in self.errors.items()))


@dataclass(frozen=True)
class Tunable:
    """One runtime key: its seed name, the setting it maps to, and the range accepted at run time."""

    name: str
    setting: str
    help: str
    minimum: Optional[int] = None   # the setting's own parser checks its minimum too
    maximum: Optional[int] = None   # a bound on top of the setting's: a typo must not reach the loader


TUNABLES: dict[str, Tunable] = {t.name: t for t in (
    Tunable("tensor_split", "tensor_split", "share of the model per GPU: one number per GPU ([] or \"\": "
            "llama.cpp decides)"),
    Tunable("gpu_layers", "gpu_layers", "layers offloaded to GPUs (-1: all, 0: CPU only)", -1, 100_000),
    Tunable("context_size", "default_context_size", "context window per request, capped by the trained one",
            16, 16_777_216),
    Tunable("batch_size", "batch_size", "prompt tokens evaluated per llama.cpp batch", 1, 65_536),
    Tunable("threads", "threads", "CPU threads for llama.cpp (0: one per core)", 0, 4_096),
    Tunable("parallel_slots", "parallel_slots", "requests decoded together per loaded model", 1, 256),
    Tunable("log_level", "log_level", "logging verbosity: DEBUG, INFO, WARNING, ERROR or CRITICAL (at once, "
            "no model reload)"),
)}


def current_values(settings: Settings) -> dict[str, Any]:
    """The tunables of `settings` by seed name (tensor_split as a list)."""
    values = {name: getattr(settings, tunable.setting) for name, tunable in TUNABLES.items()}
    values["tensor_split"] = list(values["tensor_split"])
    return values


def _integer(value: Any, tunable: Tunable) -> int:
    """A JSON integer (a whole float too) within the tunable's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be an integer, got {value!r}"[:200])
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"must be an integer, got {value!r}")
    number = SETTINGS_BY_NAME[tunable.setting].parse(int(value))  # the setting's own minimum check
    if tunable.minimum is not None and number < tunable.minimum:
        raise ValueError(f"must be at least {tunable.minimum}, got {number}")
    if tunable.maximum is not None and number > tunable.maximum:
        raise ValueError(f"must be at most {tunable.maximum}, got {number}")
    return number


def _level(value: Any) -> str:
    """A level name, in any case, as the setting spells it."""
    if not isinstance(value, str):
        raise ValueError(f"must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {value!r}"[:200])
    return SETTINGS_BY_NAME["log_level"].parse(value)  # its message names the levels


def _split(value: Any, gpu_count: int) -> tuple[float, ...]:
    """One share per GPU, as a list of numbers or the seed's "0.25,0.25,0.25,0.25"; empty: llama.cpp decides."""
    if isinstance(value, list):
        if any(isinstance(item, bool) or not isinstance(item, (int, float)) for item in value):
            raise ValueError("must be a list of numbers (or comma-separated text such as \"0.5,0.5\")")
    elif not isinstance(value, str):
        raise ValueError("must be a list of numbers or comma-separated text such as \"0.5,0.5\"")
    shares = SETTINGS_BY_NAME["tensor_split"].parse(value)  # numbers, none negative, some positive
    if not all(math.isfinite(share) for share in shares):
        raise ValueError("every share must be a finite number")
    if shares and gpu_count == 0:
        raise ValueError("no GPU detected: there is nothing to split across (use [] to leave it to llama.cpp)")
    if shares and len(shares) != gpu_count:
        raise ValueError(f"has {len(shares)} entries but {gpu_count} GPUs are present: give one share per GPU")
    return shares


def parse_changes(changes: Any, gpu_count: int) -> dict[str, Any]:
    """{setting name: parsed value} for the given runtime changes; ConfigError naming every bad field."""
    if not isinstance(changes, Mapping):
        raise ConfigError({"body": "must be a JSON object of settings to change"})
    if not changes:
        raise ConfigError({"body": f"give at least one of: {', '.join(TUNABLES)}"})
    parsed, errors = {}, {}
    for key, value in changes.items():
        tunable = TUNABLES.get(key)
        if tunable is None:
            errors[str(key)[:100]] = f"unknown setting; the runtime settings are {', '.join(TUNABLES)}"
            continue
        try:
            if key == "tensor_split":
                parsed[tunable.setting] = _split(value, gpu_count)
            elif key == "log_level":
                parsed[tunable.setting] = _level(value)
            else:
                parsed[tunable.setting] = _integer(value, tunable)
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise ConfigError(errors)
    return parsed


def validate(changes: Mapping, current: Settings, gpu_count: int) -> Settings:
    """The Settings `current` becomes with `changes` (seed names); ConfigError, `current` untouched, when any is
    bad."""
    parsed = parse_changes(changes, gpu_count)
    base = {f.name: getattr(current, f.name) for f in fields(Settings)}
    try:
        return build_settings(base, parsed)  # every key validated again, exactly as at startup
    except SettingsError as exc:
        raise ConfigError({"body": str(exc)}) from None


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {"old", "new"}} for every tunable whose value differs."""
    return {key: {"old": before.get(key), "new": after.get(key)} for key in TUNABLES
            if before.get(key) != after.get(key)}
