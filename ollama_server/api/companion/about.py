"""The companion API's service information: GET /config, /logs/<component>, /status and /diag (seed §5.3, §6.3),
and the directory and GPU facts that /info, /version and /health add to their own answers."""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import Optional

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import COMPANION
from ollama_server.api.errors.handlers import install
from ollama_server.engine import build_info
from ollama_server.jobs.paths import JobPaths
from ollama_server.log_files import ALL_COMPONENTS
from ollama_server.log_files import tail
from ollama_server.services import Services
from ollama_server.services import services
from ollama_server.settings import Settings

bp = Blueprint("companion_about", __name__)
install(bp, COMPANION)

API_VERSION = "1.0.0"  # the seed's companion API version; ours is ollama_server.__version__
DEFAULT_LINES = 100
MAX_LINES = 10000
REDACTED = "***"
SECRET_WORDS = frozenset({"key", "password", "secret", "token"})
GB = 1e9  # the seed's GB


def job_paths(svc: Services) -> JobPaths:
    """The jobs' directories: the jobs service's when it was built, else the same computed from settings."""
    jobs = getattr(svc, "jobs", None)
    return jobs.paths if jobs is not None else JobPaths.for_settings(svc.settings)


def models_dir(svc: Services) -> str:
    """The seed's single models directory: the first configured models_dir, else the managed store."""
    return svc.settings.models_dir[0] if svc.settings.models_dir else str(svc.store.managed.root)


def directories(svc: Services) -> dict[str, str]:
    """base_dir, models_dir, runs_dir, datasets_dir and db_path, as /info and /config report them."""
    paths = job_paths(svc)
    return {"base_dir": str(paths.base_dir), "models_dir": models_dir(svc),
            "runs_dir": str(paths.runs_dir), "datasets_dir": str(paths.datasets_dir), "db_path": str(paths.db_path)}


def is_secret(name: str, value: Any) -> bool:
    """A text setting one of whose words is key/password/secret/token (api_key; not metrics_require_key,
    a switch, nor default_max_tokens, a count)."""
    return isinstance(value, str) and bool(SECRET_WORDS & set(name.lower().split("_")))


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting's effective value, JSON-ready, with secrets that are set shown as "***"."""
    out: dict[str, Any] = {}
    for field in fields(settings):
        value = getattr(settings, field.name)
        if is_secret(field.name, value):
            value = REDACTED if value else value
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def gpu_available(svc: Services) -> bool:
    """NVML sees at least one GPU (the last collection's answer, else the reader's probe, made once)."""
    latest = svc.monitor.latest if svc.monitor is not None else None
    return bool(latest.gpus) if latest is not None else svc.gpu.probe()


def version_facts(svc: Services) -> dict[str, Any]:
    """The seed's /version keys (torch and transformers are looked up, never imported) and ours."""
    gpu = gpu_available(svc)
    # CUDA for llama.cpp needs both a GPU the driver sees and a build that can offload to it.
    cuda = gpu and build_info.supports_gpu_offload()
    return {"api_version": API_VERSION, "python_version": build_info.python_version(),
            "torch_version": build_info.package_version("torch"),
            "transformers_version": build_info.package_version("transformers"),
            "cuda_available": cuda, "cuda_version": svc.gpu.cuda_version if gpu else None,
            "llama_cpp_python_version": build_info.llama_cpp_version(), "gpu_available": gpu}


def health_gpu(svc: Services) -> dict[str, Any]:
    """The seed's /health `gpu` object from the last collection (no NVML call here): the first GPU's used
    memory as both allocated and reserved GB; {"error"} when that GPU is lost."""
    latest = svc.monitor.latest if svc.monitor is not None else None
    gpus = list(latest.gpus) if latest is not None else []
    if gpus and gpus[0].lost:
        return {"error": f"GPU 0 is lost: {gpus[0].error or 'fell off the bus'}"}
    if not gpus:
        count = len(svc.gpu.devices) if latest is None else 0  # before any collection: what a probe found
        return {"available": count > 0, "device_count": count, "current_device": 0 if count else None,
                "device_name": None, "memory_allocated_gb": 0, "memory_reserved_gb": 0}
    used = round((gpus[0].memory_used_bytes or 0) / GB, 2)
    return {"available": True, "device_count": len(gpus), "current_device": 0, "device_name": gpus[0].name,
            "memory_allocated_gb": used, "memory_reserved_gb": used}


def active_model(svc: Services) -> Optional[str]:
    """The model marked active when it still exists, else the one a request naming none would get."""
    chosen = svc.store.active.get()
    if chosen and svc.catalogue.get(chosen) is not None:
        return chosen
    spec = svc.engine.default_model()
    return spec.name if spec is not None else None


def worker_busy(svc: Services) -> bool:
    """Whether any job is running now."""
    jobs = getattr(svc, "jobs", None)
    return bool(jobs is not None and jobs.worker.busy)


def _local_iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds).isoformat(timespec="seconds")  # local, no zone: the seed's


@bp.get("/config")
def config():
    """The seed's directories and port, and every effective setting (secrets redacted)."""
    svc = services()
    return jsonify({**directories(svc), "port": svc.settings.port, "settings": effective_settings(svc.settings)})


def _lines_param() -> int:
    raw = request.args.get("lines")
    if raw is None:
        return DEFAULT_LINES
    try:
        lines = int(raw.strip())
    except ValueError:
        lines = 0
    if not 1 <= lines <= MAX_LINES:
        raise ApiError("invalid_request", f"lines must be an integer from 1 to {MAX_LINES}, got {raw[:50]!r}",
                       param="lines")
    return lines


@bp.get("/logs/<component>")
def logs(component: str):
    """The last `lines` lines of logs/<component>.log; [] when the file does not exist yet."""
    if component not in ALL_COMPONENTS:
        raise ApiError("invalid_request", f"Invalid component. Choose from: {list(ALL_COMPONENTS)}",
                       param="component")
    lines = _lines_param()
    path = Path(job_paths(services()).logs_dir) / f"{component}.log"
    try:
        found = tail(path, lines)
    except OSError as exc:
        raise ApiError("internal", f"Failed to read log: {exc}") from None
    return jsonify({"component": component, "lines": found})


@bp.get("/status")
def status():
    """Runtime and cache state (seed §6.3's /status): loaded models, failed loads in their cooldown, limits."""
    svc = services()
    settings = svc.settings
    snapshot = svc.engine.snapshot()
    failed = {name: {"error": entry["error"], "at": _local_iso(entry["at"]), "retry_after_s": entry["retry_after_s"]}
              for name, entry in svc.engine.pool.failed_loads().items()}
    loaded = [m.name for m in snapshot.models]
    return jsonify({
        "cached_models": loaded, "cache_size": len(loaded), "max_cache": settings.max_loaded_models,
        "loading": list(snapshot.loading), "failed_loads": failed,
        "config": {"max_cache_models": settings.max_loaded_models, "cooldown_seconds": settings.model_load_cooldown,
                   "parallel_slots": settings.parallel_slots, "max_queue": settings.max_queue,
                   "default_context_size": settings.default_context_size,
                   "request_timeout": settings.request_timeout},
        "llama_cpp_available": build_info.llama_cpp_installed(),
        "config_reload": svc.reloader.last if svc.reloader is not None else {"status": "not started"},
    })


@bp.get("/diag")
def diag():
    """llama.cpp's build and devices, NVML's driver and CUDA versions, and the seed's cuda_* keys."""
    svc = services()
    gpu = svc.gpu
    found = gpu.probe()
    latest = svc.monitor.latest if svc.monitor is not None else None
    samples = list(latest.gpus) if latest is not None else (gpu.read() if found else [])
    llama = build_info.llama_cpp_report()
    return jsonify({
        "llama_cpp": llama,
        "nvml": {"available": found, "reason": gpu.reason or None, "driver_version": gpu.driver_version,
                 "cuda_driver_version": gpu.cuda_version},
        "cuda_available": bool(found and llama["supports_gpu_offload"]),
        "cuda_count": len(samples),
        "cuda_devices": [{"index": s.index, "name": s.name} for s in samples],
        "torch_installed": build_info.package_version("torch") is not None,
        "torch_version": build_info.package_version("torch"),
    })
