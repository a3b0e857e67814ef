"""Request tracking shared by every dialect: progress of a request and dismissing (cancelling) it."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify

from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.services import services

bp = Blueprint("requests", __name__)
install(bp, PLAIN)


@bp.get("/api/progress/<request_id>")
def progress(request_id: str):
    """Where a request stands: state, dialect, endpoint, tokens so far and the limit."""
    generation = services().engine.get_request(request_id)
    if generation is None:
        return jsonify({"error": f"request '{request_id}' not found"}), 404
    return jsonify(generation.progress())


@bp.post("/api/dismiss/<request_id>")
def dismiss(request_id: str):
    """Cancel a queued or running request; its slot is freed at the next token."""
    engine = services().engine
    if engine.get_request(request_id) is None:
        return jsonify({"error": f"request '{request_id}' not found"}), 404
    cancelled = engine.cancel(request_id)
    return jsonify({"request_id": request_id, "cancelled": cancelled,
                    "state": engine.get_request(request_id).state})
