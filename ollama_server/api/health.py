"""GET /health and GET /ping: readiness and its components; 503 while loading or stopping."""
from __future__ import annotations

from datetime import datetime
from datetime import timezone

from flask import Blueprint
from flask import jsonify

from ollama_server.api.companion import about
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.services import Services
from ollama_server.services import services

bp = Blueprint("health", __name__)
install(bp, PLAIN)


def broken_models(svc: Services, loaded: set[str]) -> list[dict]:
    """Models that cannot be served: GGUF inspection failed (when inspection is on), or warm-up could not load
    them (until they are loaded after all)."""
    found: dict[str, dict] = {}
    for spec in svc.catalogue.all():
        error = svc.store.info(spec).error
        if not error and spec.name in svc.warm_failures and spec.name not in loaded:
            error = svc.warm_failures[spec.name]
        if error:
            found[spec.name] = {"name": spec.name, "path": spec.path, "error": error}
    return list(found.values())


def metrics_component(svc: Services) -> dict:
    """Monitoring, informational only (never changes the HTTP status): the last collection time, the metrics
    store's status ("metrics store: locked, collection skipped" while SQLite is locked) and the GPU reader's
    availability and reason. No NVML call and no SQLite here: the reader's and store's last known state."""
    monitor = svc.monitor
    if monitor is None:
        return {"status": "off"}
    latest = monitor.latest
    store = monitor.store.status() if monitor.store is not None else {"state": "off", "message": "no metrics store"}
    history = svc.alert_history.status() if svc.alert_history is not None else None
    gpu = svc.gpu
    out = {
        "status": "ok" if latest is not None and store["state"] == "ok" else
                  ("waiting" if latest is None else store["state"]),
        "last_collection": (datetime.fromtimestamp(latest.at, timezone.utc).isoformat()
                            if latest is not None else None),
        "store": store,
        "gpu": {"available": bool(latest.gpu_available if latest is not None else gpu.available),
                "reason": (latest.gpu_reason if latest is not None else gpu.reason) or "",
                "count": len(latest.gpus) if latest is not None else None,
                "lost": [g.index for g in latest.gpus if g.lost] if latest is not None else []},
    }
    if history is not None:
        out["alert_history"] = history
    return out


def readiness(svc: Services, snapshot, degraded: bool = False) -> str:
    """shutting_down, loading, error (no model could be loaded), degraded or ok."""
    if snapshot.closing:
        return "shutting_down"
    if svc.warming or snapshot.loading:
        return "loading"
    if svc.warm_error and not snapshot.models:
        return "error"
    return "degraded" if degraded else "ok"


@bp.get("/ping")
def ping():
    """llama-server's liveness probe: 200 {"status": "ok"} when requests can be served, 503 with the reason
    (loading, error, shutting_down) otherwise. Broken models elsewhere do not make it fail, as on /health."""
    svc = services()
    status = readiness(svc, svc.engine.snapshot())
    return jsonify({"status": status}), (200 if status == "ok" else 503)


@bp.get("/health")
def health():
    """Readiness: 200 when requests can be served now (`ok`, or `degraded` when some models or configured
    model paths are broken), 503 while loading, when no model could be loaded, or while shutting down.
    The companion's gpu, active_model and worker_busy ride along."""
    svc = services()
    snapshot = svc.engine.snapshot()
    broken = broken_models(svc, {m.name for m in snapshot.models})
    paths = svc.sources.report() if svc.sources is not None else []
    bad_paths = [entry for entry in paths if entry["status"] != "ok"]
    status = readiness(svc, snapshot, bool(broken or bad_paths))
    body = {
        "status": status,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "components": {
            "executor": {"status": "stopping" if snapshot.closing else "running",
                         "running": snapshot.running, "waiting": snapshot.waiting,
                         "loading": list(snapshot.loading)},
            "models": {"count": len(svc.catalogue.all()), "loaded": [m.name for m in snapshot.models],
                       "broken": broken},
            "model_sources": {"status": "error" if bad_paths else "ok", "paths": paths},
            "metrics": metrics_component(svc),
        },
        "active_requests": snapshot.running + snapshot.waiting,
        # The training-loop companion's /health keys (seed §5.3.1), beside ours.
        "gpu": about.health_gpu(svc),
        "active_model": about.active_model(svc),
        "worker_busy": about.worker_busy(svc),
    }
    if status == "degraded":
        body["problems"] = ([f"model {m['name']} is broken: {m['error']}" for m in broken]
                            + [f"{p['setting']} {p['path']} {p['error']}" for p in bad_paths])
    if status == "error":
        body["error"] = svc.warm_error
    return jsonify(body), (200 if status in ("ok", "degraded") else 503)
