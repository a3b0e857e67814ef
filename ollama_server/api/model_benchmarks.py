"""The dashboard's per-model benchmark: start one (202), list a model's results (model_benchmark.py)."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.engine.types import EngineError
from ollama_server.model_benchmark import BenchmarkBusy
from ollama_server.model_benchmark import ModelBenchmarks
from ollama_server.services import services

bp = Blueprint("model_benchmarks", __name__)
install(bp, PLAIN)
MAX_LIMIT = 1000


def _benchmarks() -> ModelBenchmarks:
    benchmarks = services().benchmarks
    if benchmarks is None:
        raise ApiError("unavailable", "benchmarks are not configured")
    return benchmarks


@bp.post("/api/dashboard/models/<path:name>/benchmark")
def start(name: str):
    """Run the fixed benchmark on the model in the background: 202 and the job."""
    try:
        job = _benchmarks().start(name)
    except EngineError as exc:  # unknown model: 404
        raise from_engine_error(exc) from None
    except BenchmarkBusy as exc:
        raise ApiError("invalid_request", str(exc), status=409) from None
    return jsonify(job), 202


@bp.get("/api/dashboard/models/<path:name>/benchmarks")
def results(name: str):
    """The model's stored results, newest first, the latest one, and whether one is running."""
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise ApiError("invalid_request", "limit must be an integer", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError("invalid_request", f"limit must be between 1 and {MAX_LIMIT}", param="limit")
    benchmarks = _benchmarks()
    try:
        model = services().engine.resolve(name).name
    except EngineError as exc:
        raise from_engine_error(exc) from None
    history = benchmarks.history(model, limit)
    return jsonify({"model": model, "running": model in benchmarks.running(),
                    "latest": history[0] if history else None, "benchmarks": history})
