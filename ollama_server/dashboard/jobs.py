"""/dashboard/jobs: the eval / data-generation queue with live progress and cancel buttons, each finished eval
run's metrics with one metric charted across checkpoints, and the shards data-generation jobs wrote."""
from __future__ import annotations

import logging
from typing import Any
from typing import Optional

from flask import render_template
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.dashboard import charts
from ollama_server.dashboard.alert_actions import actor
from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import version_of
from ollama_server.dashboard.fragments import with_version
from ollama_server.services import services

log = logging.getLogger(__name__)
QUEUE_LIMIT = 50
RESULTS_LIMIT = 500   # finished eval runs read for the results table and chart
SHARDS_LIMIT = 50
# The metrics an eval run's result may carry that can be charted; counts are shown, never charted.
METRICS = ("accuracy", "avg_loss", "exact_match", "contains", "regex")
COUNTS = ("total_samples", "correct")
ACTIVE = ("pending", "running")
ACTIVE_POLL_S = 2  # while a job is queued or running: progress bars should move, not jump every 15 s


def _jobs() -> Any:
    """The app's Jobs (store, paths, worker), or None when this server runs no job queue."""
    return getattr(services(), "jobs", None)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _queue_row(record: dict[str, Any]) -> dict[str, Any]:
    progress = record.get("progress") or {}
    done, total = _number(progress.get("done")), _number(progress.get("total"))
    percent = round(min(100.0, max(0.0, done * 100.0 / total)), 1) if done is not None and total else None
    return {"id": record["job_id"], "type": record.get("type"), "model_id": record.get("model_id"),
            "name": record.get("name"), "status": record.get("status"), "created_at": record.get("created_at"),
            "started_at": record.get("started_at"), "completed_at": record.get("completed_at"),
            "done": done, "total": total, "percent": percent, "error": record.get("error"),
            "cancellable": record.get("status") in ACTIVE,
            "cancel_requested": bool(record.get("cancel_requested"))}


def queue_data(message: str = "", kind: str = "") -> dict[str, Any]:
    """The newest jobs with their progress, and the counts per status."""
    jobs = _jobs()
    if jobs is None:
        return {"available": False, "jobs": [], "stats": {}, "active": False, "message": message,
                "message_kind": kind}
    rows = [_queue_row(r) for r in jobs.store.list(limit=QUEUE_LIMIT)]
    return {"available": True, "jobs": rows, "stats": jobs.store.stats(),
            "active": any(r["cancellable"] for r in rows), "message": message, "message_kind": kind}


def chosen_metric() -> str:
    """The charted metric from ?metric= (accuracy by default); anything else is a 400 naming the field."""
    metric = request.args.get("metric", "accuracy") or "accuracy"
    if metric not in METRICS:
        raise ApiError("invalid_request", f"metric must be one of {', '.join(METRICS)}; got {metric[:40]!r}",
                       param="metric")
    return metric


def _eval_runs() -> list[dict[str, Any]]:
    """Every finished eval run, newest first, with the metrics and counts its result holds."""
    jobs = _jobs()
    if jobs is None:
        return []
    runs = []
    for record in jobs.store.list(type="eval", status="done", limit=RESULTS_LIMIT):
        result = record.get("result") if isinstance(record.get("result"), dict) else {}
        values = {key: result[key] for key in METRICS + COUNTS if _number(result.get(key)) is not None}
        runs.append({"id": record["job_id"], "name": record.get("name") or "", "model_id": record.get("model_id"),
                     "created_at": record.get("created_at") or "", "completed_at": record.get("completed_at"),
                     "scores": values})
    return runs


def checkpoint_lines(runs: list[dict[str, Any]], metric: str) -> tuple[dict[str, list], list[str]]:
    """Per eval name, (model_id, value) in the order the runs were created, only the latest run of a model for
    a name; and every charted model id in that order (the x axis). `runs` are newest first, as the store lists."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run in reversed(runs):  # oldest first: a later run of the same model and eval replaces the earlier
        if metric in run["scores"]:
            key = (run["name"], run["model_id"])
            latest.pop(key, None)  # re-inserted: the dict's order stays the order of the runs kept
            latest[key] = run
    lines: dict[str, list] = {}
    order: list[str] = []
    for run in latest.values():
        lines.setdefault(run["name"], []).append((run["model_id"], run["scores"][metric]))
        if run["model_id"] not in order:
            order.append(run["model_id"])
    return dict(sorted(lines.items())), order


def results_data(metric: str) -> dict[str, Any]:
    runs = _eval_runs()
    present = [m for m in METRICS if m == metric or any(m in r["scores"] for r in runs)]
    columns = [c for c in METRICS + COUNTS if any(c in r["scores"] for r in runs)]
    lines, order = checkpoint_lines(runs, metric)
    return {"available": _jobs() is not None, "runs": runs, "columns": columns, "metric": metric,
            "metrics": present, "lines": lines, "order": order}


def with_chart(data: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint chart as a Plotly figure (built only when the fragment is sent)."""
    figure = charts.checkpoint_metric(data["metric"], data["lines"], data["order"],
                                      f"{data['metric']} across checkpoints")
    return {**data, "figure": figure}


def shards_data() -> dict[str, Any]:
    """Finished data-generation jobs and the shard files they wrote (links to GET /shards/<name>)."""
    jobs = _jobs()
    rows = []
    for record in jobs.store.list(type="data_gen", status="done", limit=SHARDS_LIMIT) if jobs is not None else ():
        result = record.get("result") if isinstance(record.get("result"), dict) else {}
        config = record.get("config") if isinstance(record.get("config"), dict) else {}
        # Only plain file names become links: a name with a path in it is shown, never linked.
        shards = [{"name": str(s), "linkable": "/" not in str(s) and "\\" not in str(s) and str(s) not in ("", ".", "..")}
                  for s in result.get("shards") or () if isinstance(s, str)]
        rows.append({"id": record["job_id"], "model_id": record.get("model_id"), "strategy": config.get("strategy"),
                     "completed_at": record.get("completed_at"), "examples": _number(result.get("examples")),
                     "shards": shards})
    return {"available": jobs is not None, "jobs": rows}


@bp.get("/jobs")
def jobs():
    metric = chosen_metric()
    return render_template("pages/jobs.html", queue_part=with_version(queue_data()),
                           results_part=with_version(results_data(metric), with_chart),
                           shards_part=with_version(shards_data()))


@bp.get("/partials/jobs")
def jobs_partial():
    return render_fragment("jobs_queue", queue_data())


@bp.get("/partials/job-results")
def job_results_partial():
    return render_fragment("jobs_results", results_data(chosen_metric()), with_chart)


@bp.get("/partials/job-shards")
def job_shards_partial():
    return render_fragment("jobs_shards", shards_data())


def _answer(message: str, kind: str, status: int):
    data = queue_data(message, kind)
    return render_template("partials/jobs_queue.html", part={**data, "version": version_of(data)}), status


@bp.post("/actions/jobs/cancel")
def cancel_job():
    """Ask a pending or running job to stop; answers the re-rendered queue with what happened."""
    job_id = request.form.get("job_id", "").strip()
    jobs = _jobs()
    if not job_id:
        return _answer("job_id is required", "error", 400)
    if jobs is None:
        return _answer("This server runs no job queue.", "error", 404)
    before = jobs.store.get(job_id)
    if before is None:
        return _answer(f"job '{job_id[:100]}' not found", "error", 404)
    if before["status"] not in ACTIVE:
        # 422 is swapped in (a job that just finished is no failure of the page): the message shows in place
        return _answer(f"{job_id} is already {before['status']}: nothing to cancel.", "error", 422)
    record = jobs.cancel(job_id)  # the store's request_cancel, and the worker woken to act on it
    if record is None:  # removed between the two reads
        return _answer(f"job '{job_id[:100]}' not found", "error", 404)
    log.info("%s asked job %s to cancel", actor(), job_id)
    if record["status"] == "cancelled":
        return _answer(f"Cancelled {job_id}.", "ok", 200)
    return _answer(f"Asked {job_id} to stop: it ends after the example in progress.", "ok", 200)


@bp.get("/shards/<name>")
def shard_download(name: str):
    """A finished shard, behind the dashboard's own login (a browser cannot send the API key to /shards)."""
    from flask import send_file

    from ollama_server.jobs.shards import ShardError
    from ollama_server.jobs.shards import shard_path

    jobs = services().jobs
    if jobs is None:
        raise ApiError("not_found", "no job queue on this server")
    try:
        path = shard_path(jobs.paths.shards_dir, name)
    except ShardError as exc:
        raise ApiError("invalid_request", str(exc), param="name") from None
    if not path.is_file():
        raise ApiError("not_found", f"Shard {name} not found")
    return send_file(path, mimetype="application/x-ndjson", as_attachment=True, download_name=name)
