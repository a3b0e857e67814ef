"""The companion API's jobs: /eval/jobs, /data_gen/jobs, /jobs (+stats, cancel) and /shards downloads."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request
from flask import send_file

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import COMPANION
from ollama_server.api.errors.handlers import install
from ollama_server.api.validation import parse_body
from ollama_server.engine.types import EngineError
from ollama_server.jobs.requests import DataGenJobRequest
from ollama_server.jobs.requests import EvalJobRequest
from ollama_server.jobs.requests import JobRequestError
from ollama_server.jobs.requests import data_gen_config
from ollama_server.jobs.requests import eval_config
from ollama_server.jobs.service import Jobs
from ollama_server.jobs.shards import ShardError
from ollama_server.jobs.shards import shard_path
from ollama_server.jobs.store import JOB_TYPES
from ollama_server.jobs.store import STATUSES
from ollama_server.services import services

bp = Blueprint("companion_jobs", __name__)
install(bp, COMPANION)
_KIND = {400: "invalid_request", 404: "not_found", 409: "invalid_request"}


def jobs() -> Jobs:
    found = services().jobs
    if found is None:
        raise ApiError("unavailable", "jobs are not configured on this server")
    return found


def _request_error(exc: JobRequestError) -> ApiError:
    return ApiError(_KIND.get(exc.status, "invalid_request"), exc.message, param=exc.param, status=exc.status)


def check_model(model_id: str) -> str:
    """The model's catalogue name; 404 `Model <id> not found` (the seed's words) when there is none."""
    try:
        return services().engine.resolve(model_id).name
    except EngineError as exc:
        if exc.kind == "not_found":
            raise ApiError("not_found", f"Model {model_id[:200]} not found", param="model_id") from None
        raise ApiError(exc.kind, exc.message, param="model_id") from None


def _job_or_404(job_id: str) -> dict:
    job = jobs().store.get(job_id)
    if job is None:
        raise ApiError("not_found", f"Job {job_id[:200]} not found")
    return job


def _queue(type: str, model_id: str, config: dict, name: str | None = None):
    job = jobs().submit(type, model_id, config, name=name)
    return jsonify({"job_id": job["job_id"], "status": job["status"]})


@bp.post("/eval/jobs")
def create_eval_job():
    """Queue an eval run; the dataset (every line it will read), metrics and model are checked first."""
    body = parse_body(EvalJobRequest, request.get_data())
    model = check_model(body.model_id)
    try:
        config = eval_config(body, jobs().paths)
    except JobRequestError as exc:
        raise _request_error(exc) from None
    return _queue("eval", model, config, name=body.name)


@bp.get("/eval/jobs/<job_id>")
def get_eval_job(job_id: str):
    """The whole job record (the seed returns any type here; so do we)."""
    return jsonify(_job_or_404(job_id))


@bp.post("/data_gen/jobs")
def create_data_gen_job():
    """Queue a data-generation job (self_instruct, fix_eval_failures)."""
    body = parse_body(DataGenJobRequest, request.get_data())
    model = check_model(body.model_id)
    try:
        config = data_gen_config(body, jobs().paths, jobs().store)
    except JobRequestError as exc:
        raise _request_error(exc) from None
    return _queue("data_gen", model, config, name=body.strategy)


@bp.get("/data_gen/jobs/<job_id>")
def get_data_gen_job(job_id: str):
    """{job_id, status, shards} as the seed has it, plus progress, result and error."""
    job = _job_or_404(job_id)
    shards = (job["result"] or {}).get("shards") or []
    return jsonify({"job_id": job["job_id"], "status": job["status"], "shards": shards,
                    "progress": job["progress"], "result": job["result"], "error": job["error"],
                    "type": job["type"], "model_id": job["model_id"]})


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in allowed:
        raise ApiError("invalid_request", f"{name}: unknown value {value[:50]!r}; choose from {list(allowed)}",
                       param=name)
    return value


@bp.get("/jobs")
def list_jobs():
    """Newest first, filtered by type and status; at most `limit` (default 100)."""
    kind, status = _choice("type", JOB_TYPES), _choice("status", STATUSES)
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise ApiError("invalid_request", "limit: must be an integer from 1 to 10000", param="limit")
    listed = jobs().store.list(type=kind, status=status, limit=int(raw))
    return jsonify({"jobs": [{"id": j["id"], "type": j["type"], "model_id": j["model_id"], "status": j["status"],
                              "created_at": j["created_at"], "name": j["name"], "progress": j["progress"],
                              "completed_at": j["completed_at"]} for j in listed]})


@bp.get("/jobs/stats")
def job_stats():
    """Counts by status and the jobs done within the last hour."""
    return jsonify(jobs().store.stats())


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """One job of any type (the seed's /generate message points here)."""
    return jsonify(_job_or_404(job_id))


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a pending job at once, stop a running one at its next example; 409 for a finished job."""
    job = _job_or_404(job_id)
    if job["status"] in ("done", "failed", "cancelled"):
        raise ApiError("invalid_request", f"Job {job_id} is already {job['status']}", status=409)
    return jsonify(jobs().cancel(job_id))


@bp.get("/shards/<name>")
def download_shard(name: str):
    """A finished shard from train_shards_out/ (the trainer needs no SSH)."""
    try:
        path = shard_path(jobs().paths.shards_dir, name)
    except ShardError as exc:
        raise ApiError("invalid_request", str(exc), param="name") from None
    if not path.is_file():
        raise ApiError("not_found", f"Shard {name} not found")
    return send_file(path, mimetype="application/x-ndjson", as_attachment=True, download_name=name)
