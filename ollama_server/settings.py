"""Service settings: one table of keys, loaded from YAML, environment and overrides, then validated."""
from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import fields
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Mapping

import yaml

ENV_PREFIX = "OLLAMA_SERVER_"


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message names the key."""


def _default_data_dir() -> str:
    home = os.environ.get("OLLAMA_SERVER_HOME")
    if home:
        return home
    return str(Path.home() / ".local" / "share" / "ollama_server")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def _parse_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ValueError(f"expected a list or comma-separated text, got {value!r}")


def _parse_paths(value: Any) -> tuple[str, ...]:
    return tuple(os.path.expanduser(_parse_str(item)) for item in _as_list(value))


def _parse_names(value: Any) -> tuple[str, ...]:
    return tuple(_parse_str(item).strip() for item in _as_list(value) if _parse_str(item).strip())


def _parse_floats(value: Any) -> tuple[float, ...]:
    numbers = tuple(_parse_float(item) for item in _as_list(value))
    if any(n < 0 for n in numbers):
        raise ValueError("proportions must not be negative")
    if numbers and sum(numbers) <= 0:
        raise ValueError("at least one proportion must be positive")
    return numbers


def _at_least(minimum: float, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        parsed = parse(value)
        if parsed < minimum:
            raise ValueError(f"must be at least {minimum}, got {parsed}")
        return parsed
    return check


def _between(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        parsed = _parse_int(value)
        if not low <= parsed <= high:
            raise ValueError(f"must be between {low} and {high}, got {parsed}")
        return parsed
    return check


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _parse_str(value).strip()
        for choice in choices:
            if text.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return check


def _path(value: Any) -> str:
    return os.path.expanduser(_parse_str(value))


@dataclass(frozen=True)
class Setting:
    """One configuration key: its name, default, parser and help text."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("models_dir", (), _parse_paths, "Directories scanned for .gguf files (list)."),
    Setting("manifests_dir", "", _path,
            "An Ollama model store read in place: its manifests/ folder, or the root holding manifests/ and blobs/."),
    Setting("default_context_size", 4096, _at_least(16, _parse_int),
            "Context window per request when none is asked for; capped by the model's trained context."),
    Setting("tensor_split", (), _parse_floats, "Share of the model per GPU, e.g. 3,1 (empty: llama.cpp decides)."),
    Setting("split_mode", "layer", _one_of("none", "layer", "row"), "How llama.cpp splits a model across GPUs."),
    Setting("main_gpu", 0, _at_least(0, _parse_int), "GPU used for the whole model when split_mode is none."),
    Setting("gpu_layers", -1, _at_least(-1, _parse_int), "Layers offloaded to GPUs (-1: all, 0: CPU only)."),
    Setting("threads", 0, _at_least(0, _parse_int), "CPU threads for llama.cpp (0: one per core)."),
    Setting("batch_size", 512, _at_least(1, _parse_int), "Prompt tokens evaluated per llama.cpp batch."),
    Setting("speculative_decoding", True, _parse_bool,
            "Speculative decoding: drafts (prompt lookup, or draft_model) verified in one batch, kept with their probability."),
    Setting("reproducible_greedy", True, _parse_bool,
            "Greedy requests read their prompt afresh and are never drafted, so they repeat their tokens exactly."),
    Setting("speculative_max_slots", 2, _at_least(1, _parse_int),
            "Draft only while at most this many requests decode at once (larger batches gain nothing on CPU)."),
    Setting("draft_model", "", _path,
            "GGUF of a small model with the same vocabulary that drafts tokens (empty: prompt lookup only)."),
    Setting("request_timeout", 600.0, _at_least(0.001, _parse_float),
            "Seconds a request may take, queueing included, before it is stopped."),
    Setting("log_level", "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "Logging verbosity."),
    Setting("log_format", "json", _one_of("json", "text"),
            "Log lines: json (one object a line: timestamp, level, logger, request_id, message, extra) or text."),
    Setting("enable_model_inspection", True, _parse_bool, "Read GGUF headers for model metadata."),
    Setting("preserve_think_tags", False, _parse_bool, "Keep <think> tags in Ollama responses."),
    Setting("host", "127.0.0.1", _parse_str, "Address to listen on (loopback unless you mean otherwise)."),
    Setting("port", 11435, _between(1, 65535), "TCP port to listen on."),
    Setting("data_dir", None, _path,
            "Data directory: models, database, logs (default $OLLAMA_SERVER_HOME or ~/.local/share/ollama_server)."),
    Setting("max_loaded_models", 2, _at_least(1, _parse_int), "Models kept loaded at once; least recently used goes first."),
    Setting("parallel_slots", 4, _at_least(1, _parse_int),
            "Requests decoded together per loaded model (continuous batching); KV memory grows with it."),
    Setting("max_queue", 64, _at_least(0, _parse_int), "Requests allowed to wait for a slot; beyond it the answer is 'busy'."),
    Setting("api_key", "", _parse_str, "If set, inference and admin routes require 'Authorization: Bearer <key>'."),
    Setting("max_request_bytes", 8 * 1024 * 1024, _at_least(1024, _parse_int), "Largest request body accepted (bytes)."),
    Setting("default_max_tokens", 512, _at_least(0, _parse_int),
            "Reply length cap for OpenAI chat requests that give no max_tokens (0: the rest of the context)."),
    Setting("model_load_cooldown", 30.0, _at_least(0, _parse_float),
            "Seconds a model that failed to load is not tried again (its error is returned meanwhile)."),
    Setting("default_keep_alive", 300.0, _parse_float,
            "Seconds an idle model stays loaded when a request gives no keep_alive (negative: forever)."),
    Setting("allow_private_pull_urls", False, _parse_bool,
            "Let /api/pull fetch from loopback and private addresses (off: only public hosts)."),
    Setting("partial_download_max_age", 86400.0, _at_least(0, _parse_float),
            "Seconds an abandoned pull's partial download is kept for resuming before it is deleted."),
    Setting("allowed_hosts", (), _parse_names,
            "Host names accepted besides localhost, this machine's name and IP literals (list; '*': any)."),
    Setting("allowed_origins", (), _parse_names,
            "Browser origins allowed besides Ollama's local defaults (list; '*' wildcards, e.g. https://*.example.com)."),
    Setting("max_schema_depth", 16, _between(1, 64),
            "Deepest nesting a JSON schema for constrained output may have (objects, arrays, combinators)."),
    Setting("max_schema_repetition", 1000, _between(1, 100000),
            "Largest sum of the finite repetition counts in a JSON schema (minItems, maxLength, regex {m,n}, ...)."),
    Setting("max_grammar_bytes", 262144, _at_least(1024, _parse_int),
            "Largest grammar (GBNF text) a constrained-output request may compile to."),
    Setting("metrics_interval", 5.0, _at_least(0.5, _parse_float),
            "Seconds between collections of GPU, host and request metrics (and alert evaluations)."),
    Setting("metrics_db", "", _path, "SQLite file for metrics and alert history (empty: <data_dir>/metrics.db)."),
    Setting("metrics_raw_retention_hours", 24.0, _at_least(1, _parse_float),
            "Hours of raw samples kept; charts starting inside this window read them."),
    Setting("metrics_rollup_retention_days", 30.0, _at_least(1, _parse_float),
            "Days of 1-minute roll-ups kept; longer charts read them."),
    Setting("metrics_busy_timeout", 2.0, _at_least(0.01, _parse_float),
            "Seconds a metrics write waits on a locked database before that collection is skipped."),
    Setting("metrics_maintenance_interval", 60.0, _at_least(10, _parse_float),
            "Seconds between roll-up and prune runs of the metrics store."),
    Setting("metrics_require_key", False, _parse_bool, "With api_key set, /metrics needs the key too."),
    Setting("alert_rules_file", "", _path,
            "Alert rules in the seed's format (empty: config/alerts.yaml if present, else the shipped defaults)."),
    Setting("dashboard_refresh_seconds", 15.0, _at_least(1, _parse_float),
            "Seconds between the dashboard's polls of each live fragment (the seed's 15)."),
    Setting("alert_channels_file", "", _path,
            "Alert channels: webhooks, e-mail, Alertmanager (empty: config/alerting.yaml if present, else log only)."),
    Setting("background_every", 4, _at_least(1, _parse_int),
            "While interactive requests decode, job requests join one engine step in this many (1: every step)."),
    Setting("base_dir", "", _path,
            "Jobs' base directory: datasets/, runs/, train_shards_out/, logs/ and db.sqlite (empty: data_dir)."),
    Setting("datasets_dir", "", _path, "Where eval datasets (JSONL) are read from (empty: <base_dir>/datasets)."),
    Setting("shard_max_examples", 500, _at_least(1, _parse_int),
            "Examples per data-generation shard in train_shards_out/ (a full shard is never written again)."),
    Setting("converter_dir", "", _path,
            "llama.cpp tree with convert_hf_to_gguf.py (empty: the pinned llama-cpp-python sources, `make converter`)."),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated, frozen service settings."""

    models_dir: tuple[str, ...]
    manifests_dir: str
    default_context_size: int
    tensor_split: tuple[float, ...]
    split_mode: str
    main_gpu: int
    gpu_layers: int
    threads: int
    batch_size: int
    speculative_decoding: bool
    reproducible_greedy: bool
    speculative_max_slots: int
    draft_model: str
    request_timeout: float
    log_level: str
    log_format: str
    enable_model_inspection: bool
    preserve_think_tags: bool
    host: str
    port: int
    data_dir: str
    max_loaded_models: int
    parallel_slots: int
    max_queue: int
    api_key: str
    max_request_bytes: int
    default_max_tokens: int
    model_load_cooldown: float
    default_keep_alive: float
    allow_private_pull_urls: bool
    partial_download_max_age: float
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    max_schema_depth: int
    max_schema_repetition: int
    max_grammar_bytes: int
    metrics_interval: float
    metrics_db: str
    metrics_raw_retention_hours: float
    metrics_rollup_retention_days: float
    metrics_busy_timeout: float
    metrics_maintenance_interval: float
    metrics_require_key: bool
    alert_rules_file: str
    dashboard_refresh_seconds: float
    alert_channels_file: str
    background_every: int
    base_dir: str
    datasets_dir: str
    shard_max_examples: int
    converter_dir: str

    @property
    def effective_threads(self) -> int:
        """CPU threads to give llama.cpp."""
        return self.threads or os.cpu_count() or 1


assert {f.name for f in fields(Settings)} == set(SETTINGS_BY_NAME), "Settings and SETTINGS disagree"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML settings file; an empty file means no settings."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    return data


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings named by OLLAMA_SERVER_<KEY> environment variables."""
    found = {}
    for setting in SETTINGS:
        key = ENV_PREFIX + setting.name.upper()
        if key in environ:
            found[setting.name] = environ[key]
    return found


def build_settings(*layers: Mapping[str, Any]) -> Settings:
    """Merge layers (later wins) over the defaults and validate every key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if name not in SETTINGS_BY_NAME:
                raise SettingsError(f"unknown setting {name!r}")
            merged[name] = value
    values = {}
    for setting in SETTINGS:
        raw = merged.get(setting.name, setting.default)
        if setting.name == "data_dir" and raw in (None, ""):
            raw = _default_data_dir()
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"invalid value for setting {setting.name!r}: {exc}") from None
    return Settings(**values)


def load_settings(config_path: str | Path | None = None,
                  environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults, then the YAML file (if any), then environment variables, then explicit overrides."""
    file_layer = read_yaml(config_path) if config_path and Path(config_path).exists() else {}
    if config_path and not Path(config_path).exists():
        raise SettingsError(f"config file {config_path} does not exist")
    env_layer = env_overrides(os.environ if environ is None else environ)
    return build_settings(file_layer, env_layer, overrides or {})
