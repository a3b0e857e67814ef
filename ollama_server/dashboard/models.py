"""/dashboard/models: every model (size, parameters, quantization, true context, template, capabilities,
source, loaded), its usage from the store, the per-model benchmark, and the model actions (load, unload,
set active, delete, pull with progress)."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
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

log = logging.getLogger(__name__)
USAGE_WINDOW_S = 86400.0
WHOLE = 1e9  # one bucket for the whole usage window (buckets are epoch-aligned)


def _usage(since: float) -> dict[str, dict[str, Optional[float]]]:
    """Per model over the last 24 h: requests (the window gauge's mean × span / window) and decode tokens/s."""
    monitor = services().monitor
    if monitor is None or monitor.store is None:
        return {}
    window_s = monitor.aggregator.window_s
    span = time.time() - since
    out: dict[str, dict[str, Optional[float]]] = {}
    for metric, key in (("llm_window_requests", "requests"), ("llm_window_decode_tokens_per_second", "tps")):
        per_model: dict[str, list[float]] = {}
        for labels_json, points in monitor.store.series_by_labels(metric, since, WHOLE).items():
            model = json.loads(labels_json).get("model", "")
            per_model.setdefault(model, []).extend(v for _, v in points)
        for model, values in per_model.items():
            mean = sum(values) / len(values) if values else None
            entry = out.setdefault(model, {"requests": None, "tps": None})
            if key == "requests":
                # summed over endpoints: each endpoint's window count adds to the model's
                entry[key] = round(sum(values) / max(1, len(points)) * span / window_s) if values else None
            else:
                entry[key] = round(mean, 1) if mean is not None else None
    return out


@table("models")
def model_rows() -> list[dict[str, Any]]:
    """Every model the store knows, with what its GGUF header says and whether it is loaded."""
    svc = services()
    loaded = {m.name: m for m in svc.engine.snapshot().models}
    active = svc.store.active.get()
    usage = _usage(time.time() - USAGE_WINDOW_S)
    benchmarks = getattr(svc, "benchmarks", None)
    rows = []
    for spec in svc.store.all():
        info = svc.store.info(spec)
        bench = benchmarks.latest(spec.name) if benchmarks is not None else None
        rows.append({"name": spec.name, "size_bytes": spec.size_bytes, "parameters": info.size_label or None,
                     "parameter_count": info.parameter_count or None, "quantization": info.file_type or None,
                     "architecture": info.architecture or None, "context_length": info.context_length,
                     "chat_template": bool(info.chat_template or spec.template), "capabilities": list(info.capabilities),
                     "source": spec.source, "read_only": spec.read_only, "loaded": spec.name in loaded,
                     "loaded_context": loaded[spec.name].context_length if spec.name in loaded else None,
                     "active": spec.name == active, "load_failed": svc.engine.pool.has_failed(spec.name),
                     "inspect_error": info.error or None,
                     "requests_24h": usage.get(spec.name, {}).get("requests"),
                     "decode_tokens_per_second_24h": usage.get(spec.name, {}).get("tps"),
                     "benchmark": bench})
    return rows


@table("benchmarks")
def benchmark_rows() -> list[dict[str, Any]]:
    benchmarks = getattr(services(), "benchmarks", None)
    if benchmarks is None:
        return []
    return [row for spec in services().store.all() for row in benchmarks.history(spec.name)]


def models_data(message: str = "", kind: str = "") -> dict[str, Any]:
    benchmarks = getattr(services(), "benchmarks", None)
    return {"models": model_rows(), "loading": list(services().engine.snapshot().loading),
            "benchmarking": benchmarks.running() if benchmarks is not None else [],
            "message": message, "message_kind": kind}


def pulls_data() -> dict[str, Any]:
    pulls = getattr(services(), "pulls", None)
    jobs = pulls.list() if pulls is not None else []
    return {"jobs": jobs[:5], "running": any(j["status"] == "running" for j in jobs)}


@bp.get("/models")
def models():
    return render_template("pages/models.html", models_part=with_version(models_data()),
                           pulls_part=with_version(pulls_data()))


@bp.get("/partials/models")
def models_partial():
    return render_fragment("models", models_data())


@bp.get("/partials/pulls")
def pulls_partial():
    return render_fragment("pulls", pulls_data())


def _answer(message: str, kind: str = "ok", status: int = 200):
    data = models_data(message, kind)
    return render_template("partials/models.html", part={**data, "version": version_of(data)}), status


def _spec():
    name = request.form.get("model", "")
    spec = services().store.get(name) if name else None
    if spec is None:
        raise LookupError(f"model '{name[:100]}' not found")
    return spec


def _load_in_background(name: str) -> None:
    def load() -> None:
        try:
            services_ref.engine.load(name)
        except Exception as exc:  # shown on the page as "load failed" (the pool remembers the error)
            log.warning("dashboard load of %s failed: %s", name, exc)
    services_ref = services()
    threading.Thread(target=load, name=f"dashboard-load-{name}", daemon=True).start()


@bp.post("/actions/models/load")
def load_model():
    try:
        spec = _spec()
    except LookupError as exc:
        return _answer(str(exc), "error", 404)
    _load_in_background(spec.name)
    return _answer(f"Loading {spec.name}…")


@bp.post("/actions/models/unload")
def unload_model():
    try:
        spec = _spec()
    except LookupError as exc:
        return _answer(str(exc), "error", 404)
    unloaded = services().engine.unload(spec.name)
    return _answer(f"Unloaded {spec.name}." if unloaded else f"{spec.name} was not loaded.")


@bp.post("/actions/models/activate")
def activate_model():
    try:
        spec = _spec()
        services().store.set_active(spec.name)
    except LookupError as exc:
        return _answer(str(exc), "error", 404)
    log.info("%s made %s the active model", actor(), spec.name)
    return _answer(f"{spec.name} is now the model used when a request names none.")


@bp.post("/actions/models/delete")
def delete_model():
    from ollama_server.models.store import ModelStoreError
    try:
        spec = _spec()
        if spec.read_only:
            return _answer(f"{spec.name} comes from a {spec.source} source the service does not own: delete the "
                           "file there instead.", "error", 422)
        services().engine.unload(spec.name)
        services().store.remove(spec)
    except LookupError as exc:
        return _answer(str(exc), "error", 404)
    except ModelStoreError as exc:
        return _answer(exc.message, "error", 422)
    log.info("%s deleted %s", actor(), spec.name)
    return _answer(f"Deleted {spec.name}.")


@bp.post("/actions/models/benchmark")
def benchmark_model():
    try:
        spec = _spec()
    except LookupError as exc:  # an unknown model is a 404, as for every other model action
        return _answer(str(exc), "error", 404)
    try:
        services().benchmarks.start(spec.name)
    except (LookupError, ValueError, RuntimeError) as exc:
        return _answer(str(exc), "error", 422)
    return _answer(f"Benchmarking {spec.name}: prompt and decode speed, time to first token…")


@bp.post("/actions/pulls")
def start_pull():
    source = request.form.get("source", "").strip()
    name = request.form.get("name", "").strip() or None
    error = ""
    if not source:
        error = "Give a URL (https://…/model.gguf) or hf://owner/repo/file.gguf."
    else:
        try:
            services().pulls.start(source, name)
        except Exception as exc:  # the pull's validation errors (bad URL, refused address, bad name) are messages
            error = str(exc) or exc.__class__.__name__
    data = {**pulls_data(), "error": error, "source": source, "name": name or ""}
    return render_template("partials/pulls.html", part={**data, "version": version_of(data)}), 422 if error else 200
