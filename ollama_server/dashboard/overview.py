"""/dashboard: health score and components, live requests, loaded models, GPU summary, alerts, errors."""
from __future__ import annotations

import math
import time
from typing import Any
from typing import Optional

from flask import render_template

from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.export import table
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import with_version
from ollama_server.monitoring.health_score import machine_thermal_status
from ollama_server.services import services

RECENT_ERRORS_SHOWN = 10


def latest():
    """The monitor's last collection, or None (no monitor, or nothing collected yet)."""
    monitor = services().monitor
    return monitor.latest if monitor is not None else None


@table("requests")
def active_requests() -> list[dict[str, Any]]:
    """Queued and running requests with their progress and decode speed so far."""
    now = time.monotonic()
    rows = []
    for generation in services().engine.requests.live():
        p = generation.progress()
        started = generation.started_at
        running_s = now - started if started is not None else None
        rate = p["tokens_generated"] / running_s if running_s and p["tokens_generated"] else None
        rows.append({"request_id": p["request_id"], "model": p["model"], "api": p["dialect"],
                     "endpoint": p["endpoint"], "state": p["state"], "tokens": p["tokens_generated"],
                     "max_tokens": p["max_tokens"], "prompt_tokens": p["prompt_tokens"],
                     "percent": round(100.0 * p["tokens_generated"] / p["max_tokens"], 1) if p["max_tokens"] else 0.0,
                     "tokens_per_second": round(rate, 1) if rate else None,
                     "age_s": round(now - generation.submitted_at, 1)})
    return rows


@table("loaded_models")
def loaded_models() -> list[dict[str, Any]]:
    """Models in memory now: context, requests on them, file size, when keep-alive unloads them."""
    svc = services()
    rows = []
    for state in svc.engine.snapshot().models:
        spec = svc.store.get(state.name)
        rows.append({"name": state.name, "context_length": state.context_length, "running": state.running,
                     "waiting": state.waiting, "size_bytes": spec.size_bytes if spec else None,
                     # to the minute: expires_at is recomputed on every read and would change each poll
                     "loaded_at": state.loaded_at,
                     "expires_at": math.ceil(state.expires_at / 60) * 60 if state.expires_at else None,
                     # whole minutes: a countdown in seconds would change the fragment on every poll
                     "expires_in_min": max(0, math.ceil((state.expires_at - time.time()) / 60))
                     if state.expires_at else None})
    return rows


def gpu_summary(collection) -> dict[str, Any]:
    """Count, memory, hottest and average temperature, thermal status; the reason when there is no GPU."""
    if collection is None:
        return {"count": 0, "message": "waiting for the first collection"}
    gpus = [g for g in collection.gpus if not g.lost]
    if not collection.gpus:
        return {"count": 0, "message": f"No GPU detected ({collection.gpu_reason or 'NVML reports none'}): "
                                       "models run on the CPU."}
    temps = [g.temperature_celsius for g in gpus if g.temperature_celsius is not None]
    return {"count": len(collection.gpus), "lost": len(collection.gpus) - len(gpus),
            "memory_used": sum(g.memory_used_bytes or 0 for g in gpus),
            "memory_total": sum(g.memory_total_bytes or 0 for g in gpus),
            "hottest": max(temps, default=None),
            "average_temperature": round(sum(temps) / len(temps), 1) if temps else None,
            "thermal_status": machine_thermal_status(temps)}


def alerts(collection) -> list[dict[str, Any]]:
    """Pending and firing alerts, each with its silence or acknowledgement (if any)."""
    if collection is None:
        return []
    silences = getattr(services(), "silences", None)
    rows = []
    for (name, labels), state in collection.alerts:
        labels_dict = dict(labels)
        quiet = silences.state_of(name, labels_dict, started_at=state.active_since) if silences is not None else None
        value = state.value if state.value is not None and math.isfinite(state.value) else None
        rows.append({"alert": name, "labels": labels_dict, "state": state.phase, "severity": state.severity,
                     "value": value, "since": state.active_since, "quiet": quiet})
    return rows


def recent_errors(collection, limit: Optional[int] = RECENT_ERRORS_SHOWN) -> list[dict[str, Any]]:
    """The newest failed or refused requests, with their request ids."""
    if collection is None:
        return []
    records = collection.recent_errors if limit is None else collection.recent_errors[:limit]
    return [{"at": r.finished_at, "request_id": r.request_id, "api": r.dialect, "endpoint": r.endpoint,
             "model": r.model, "outcome": r.outcome, "error": r.error_kind, "status": r.http_status}
            for r in records]


def health(collection) -> Optional[dict[str, Any]]:
    if collection is None:
        return None
    h = collection.health
    return {"score": round(h.score, 1), "status": h.status, "alert_penalty": h.alert_penalty,
            "components": [{"name": c.name, "score": round(c.score, 1), "weight": c.weight} for c in h.components],
            "skipped": list(h.skipped)}


def health_data() -> dict[str, Any]:
    c = latest()
    return {"health": health(c), "gpu": gpu_summary(c), "collected_at": c.at if c else None}


def models_data() -> dict[str, Any]:
    return {"loaded": loaded_models(), "loading": list(services().engine.snapshot().loading)}


def alerts_data() -> dict[str, Any]:
    c = latest()
    return {"alerts": alerts(c), "errors": recent_errors(c)}


@bp.get("/")
def overview():
    """The overview page; each section is a fragment that polls on its own."""
    return render_template("pages/overview.html", health_part=with_version(health_data()),
                           models_part=with_version(models_data()), alerts_part=with_version(alerts_data()),
                           requests=active_requests())


@bp.get("/partials/health")
def health_partial():
    return render_fragment("health", health_data())


@bp.get("/partials/loaded-models")
def loaded_models_partial():
    return render_fragment("loaded_models", models_data())


@bp.get("/partials/alerts")
def alerts_partial():
    return render_fragment("alerts", alerts_data())


@bp.get("/partials/requests")
def requests_partial():
    return render_fragment("requests", {"requests": active_requests()})


@table("alerts")
def alerts_table() -> list[dict[str, Any]]:
    return alerts(latest())


@table("errors")
def errors_table() -> list[dict[str, Any]]:
    return recent_errors(latest(), limit=None)
