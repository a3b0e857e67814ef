"""GET /health: overall status and its components; 503 while a model is loading or the server stops."""
from __future__ import annotations

from datetime import datetime
from datetime import timezone

from flask import Blueprint
from flask import jsonify

from ollama_server.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Readiness: 200 when requests can be served now, 503 while loading or shutting down."""
    svc = services()
    snapshot = svc.engine.snapshot()
    loading = svc.warming or bool(snapshot["loading"])
    if snapshot["closing"]:
        status = "shutting_down"
    elif loading:
        status = "loading"
    elif svc.warm_error and not snapshot["models"]:
        status = "error"
    else:
        status = "ok"
    body = {
        "status": status,
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "components": {
            "executor": {"status": "stopping" if snapshot["closing"] else "running",
                         "running": snapshot["running"], "waiting": snapshot["waiting"],
                         "loading": snapshot["loading"]},
            "models": {"count": len(svc.catalogue.all()), "loaded": [m["name"] for m in snapshot["models"]]},
        },
        "active_requests": snapshot["running"] + snapshot["waiting"],
    }
    if status == "error":
        body["error"] = svc.warm_error
    return jsonify(body), (200 if status == "ok" else 503)
