"""GET /metrics: the Prometheus exposition of the app's Exporter (the last collection, never NVML or SQLite)."""
from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.services import services

bp = Blueprint("metrics_export", __name__)
install(bp, PLAIN)


@bp.get("/metrics")
def metrics() -> Response:
    """Text format 0.0.4, or OpenMetrics when the Accept header asks for it; open unless metrics_require_key."""
    body, content_type = services().exporter.render(request.headers.get("Accept", ""))
    response = Response(body, status=200)
    response.headers["Content-Type"] = content_type  # exactly, with its version (Prometheus 3 requires one)
    response.headers["Cache-Control"] = "no-store"
    return response
