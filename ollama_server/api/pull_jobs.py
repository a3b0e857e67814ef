"""The dashboard's background pulls: start one (202), follow its progress, list the recent ones."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.models.pull_jobs import PullJobs
from ollama_server.models.pull_source import PullError
from ollama_server.services import services

bp = Blueprint("pull_jobs", __name__)
install(bp, PLAIN)
ROUTE = "/api/dashboard/pulls"
_KINDS = {400: "invalid_request", 404: "not_found", 409: "invalid_request", 502: "unavailable"}


def _pulls() -> PullJobs:
    pulls = services().pulls
    if pulls is None:
        raise ApiError("unavailable", "background pulls are not configured")
    return pulls


@bp.post(ROUTE)
def start():
    """Validate {"source", "name"?} and start the download: 202 and the job."""
    body = request.get_json(force=True, silent=True) if request.data else None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    source, name = body.get("source"), body.get("name")
    if not isinstance(source, str) or not source.strip():
        raise ApiError("invalid_request", "source is required: an http(s):// URL or hf://owner/repo/file.gguf",
                       param="source")
    if name is not None and not isinstance(name, str):
        raise ApiError("invalid_request", "name must be a string", param="name")
    try:
        job = _pulls().start(source, name or None)
    except PullError as exc:
        param = "name" if name and "name" in exc.message.lower() else "source"
        raise ApiError(_KINDS.get(exc.status, "internal"), f"{param}: {exc.message}", param=param,
                       status=exc.status) from None
    return jsonify(job), 202


@bp.get(ROUTE + "/<job_id>")
def show(job_id: str):
    """One job's progress."""
    job = _pulls().get(job_id)
    if job is None:
        raise ApiError("not_found", f"no pull job {job_id[:100]!r}")
    return jsonify(job)


@bp.get(ROUTE)
def recent():
    """The last pulls, most recent first."""
    return jsonify({"pulls": _pulls().list()})
