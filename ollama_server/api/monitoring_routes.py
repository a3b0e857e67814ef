"""The JSON monitoring APIs (seed-contracts.md §1.4, §2.2–2.8, §5.3.9), all read from `monitor.latest`.

A request never touches NVML: every GPU, host, request and health figure comes from the last
collection (the scheduler's job, every `metrics_interval`). SQLite is read only by /api/alerts (the
alert history) and by the dashboard's optional `?since=` series. Before the first collection there
is nothing to show: 503 `{"error": "no metrics collected yet"}` with Retry-After (we do not collect
on the request thread: a first request must not pay for an NVML init or a locked database).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any
from typing import Optional

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.monitoring.collector import Collection
from ollama_server.monitoring.gpu import GpuSample
from ollama_server.monitoring.kpis import kpis
from ollama_server.monitoring.health_score import machine_thermal_status
from ollama_server.monitoring.health_score import thermal_status
from ollama_server.monitoring.requests_agg import iso_utc
from ollama_server.services import services

bp = Blueprint("monitoring", __name__)
install(bp, PLAIN)

MIB = 1024 ** 2
GB = 1e9
NOT_YET = "no metrics collected yet"
SERIES_METRICS = {  # dashboard chart name -> stored metric (None labels: every label set averaged)
    "health_score": "llm_health_score", "gpu_temperature_celsius": "llm_gpu_temperature_celsius",
    "gpu_utilization_ratio": "llm_gpu_utilization_ratio", "cpu_usage_ratio": "llm_host_cpu_usage_ratio",
    "memory_usage_ratio": "llm_host_memory_usage_ratio", "active_requests": "llm_active_requests"}
MAX_SERIES_POINTS = 2000
DISK_CACHE_S = 30.0


class _NotCollected(Exception):
    pass


@bp.errorhandler(_NotCollected)
def _not_collected(_exc):
    """503 with a Retry-After of one collection interval: the first collection is on its way."""
    response = jsonify({"error": NOT_YET})
    response.status_code = 503
    response.headers["Retry-After"] = str(max(1, math.ceil(services().settings.metrics_interval)))
    return response


def latest() -> Collection:
    """The last collection; _NotCollected (a 503) before the first one."""
    monitor = services().monitor
    collection = monitor.latest if monitor is not None else None
    if collection is None:
        raise _NotCollected()
    return collection


def _r(value: Optional[float], digits: int = 1) -> Optional[float]:
    """Rounded for display; None stays None."""
    return None if value is None else round(float(value), digits)


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that have a value: a reading the driver does not report is absent, never 0."""
    return {key: value for key, value in fields.items() if value is not None}


def _mb(value: Optional[int]) -> Optional[int]:
    """Bytes as MiB (the seed's "MB", as nvidia-smi reports it)."""
    return None if value is None else int(round(value / MIB))


def gpu_entry(gpu: GpuSample) -> dict[str, Any]:
    """One GPU in the seed's GPU document: MiB, °C, %, W; a lost GPU keeps only who it was and why."""
    if gpu.lost:
        return _present({"index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "lost": True,
                         "error": gpu.error or "GPU is lost", "thermal_status": "unknown"})
    used, total = gpu.memory_used_bytes, gpu.memory_total_bytes
    return _present({
        "index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "lost": False,
        "temperature": gpu.temperature_celsius, "thermal_status": thermal_status(gpu.temperature_celsius),
        "utilization_percent": gpu.utilization_percent, "memory_utilization_percent": gpu.memory_utilization_percent,
        "memory_total": _mb(total), "memory_used": _mb(used), "memory_free": _mb(gpu.memory_free_bytes),
        "memory_percent": _r(used / total * 100.0) if used is not None and total else None,
        "power_draw": _r(gpu.power_watts, 2), "power_limit": _r(gpu.power_limit_watts, 2),
        "fan_speed": gpu.fan_speed_percent, "clock_graphics_mhz": gpu.clock_graphics_mhz,
        "clock_sm_mhz": gpu.clock_sm_mhz, "clock_memory_mhz": gpu.clock_memory_mhz,
        "throttle_reasons": list(gpu.throttle_reasons) if gpu.throttle_reasons is not None else None,
        "pcie_generation": gpu.pcie_generation, "pcie_width": gpu.pcie_width})


def no_gpu_message(c: Collection) -> str:
    """Said plainly on a CPU machine: no GPU, and why (no driver, no library)."""
    return f"no GPU: {c.gpu_reason or 'no NVIDIA GPU was found'}"


def gpu_document(c: Collection) -> dict[str, Any]:
    """The seed's GPU metrics document: every GPU, totals over the working ones, the hottest GPU's band."""
    working = [g for g in c.gpus if not g.lost]
    lost = [g.index for g in c.gpus if g.lost]
    temperatures = [g.temperature_celsius for g in working if g.temperature_celsius is not None]
    utilizations = [g.utilization_percent for g in working if g.utilization_percent is not None]
    body: dict[str, Any] = {
        "timestamp": iso_utc(c.at), "gpu_available": bool(c.gpus), "gpu_count": len(c.gpus),
        "driver_version": c.driver_version, "cuda_version": c.cuda_version,
        "gpus": [gpu_entry(g) for g in c.gpus], "lost_gpus": lost,
        "total_memory_used": sum(_mb(g.memory_used_bytes) or 0 for g in working),
        "total_memory_available": sum(_mb(g.memory_total_bytes) or 0 for g in working),
        "average_temperature": _r(sum(temperatures) / len(temperatures)) if temperatures else None,
        "average_utilization": _r(sum(utilizations) / len(utilizations)) if utilizations else None,
        "thermal_status": machine_thermal_status(temperatures) if c.gpus else "no_gpu",
    }
    if not c.gpus:
        body["message"] = no_gpu_message(c)
    elif lost:
        body["message"] = "; ".join(f"GPU {index} lost" for index in lost)
    return body


@bp.get("/api/metrics/gpu")
def metrics_gpu():
    """Every GPU from the last collection."""
    return jsonify(gpu_document(latest()))


def _active_requests() -> list[dict[str, Any]]:
    """The live requests in the seed's dashboard shape (request_id, status, model, progress, total)."""
    rows = []
    for generation in services().engine.requests.live():
        p = generation.progress()
        rows.append({"request_id": p["request_id"], "status": "processing" if p["state"] == "running" else "queued",
                     "model": p["model"], "progress": p["tokens_generated"], "total": p["max_tokens"],
                     "dialect": p["dialect"], "endpoint": p["endpoint"]})
    return rows


def _alerts_now(c: Collection) -> list[dict[str, Any]]:
    return [{"alert": key[0], "labels": dict(key[1]), "state": state.phase, "severity": state.severity,
             "value": None if state.value is None or math.isnan(state.value) else state.value,
             "active_since": iso_utc(state.active_since), "fired_at": iso_utc(state.fired_at)}
            for key, state in c.alerts]


def _series(since_text: str, step_text: str) -> dict[str, list[list[float]]]:
    store = services().monitor.store
    now = time.time()
    try:
        since = float(since_text)
        step = float(step_text) if step_text else 60.0
    except ValueError:
        raise ApiError("invalid_request", "since and step must be numbers (since: epoch seconds, or negative "
                       "seconds before now; step: seconds)", param="since") from None
    if since < 0:
        since = now + since
    if not math.isfinite(since) or not math.isfinite(step) or step <= 0:
        raise ApiError("invalid_request", "step must be a positive number of seconds", param="step")
    if (now - since) / step > MAX_SERIES_POINTS:
        raise ApiError("invalid_request", f"at most {MAX_SERIES_POINTS} points per series: raise step",
                       param="step")
    if store is None:
        return {}
    return {name: [[t, v] for t, v in store.series(metric, since, step)] for name, metric in SERIES_METRICS.items()}


@bp.get("/api/metrics/dashboard")
def metrics_dashboard():
    """The main page's data: status, active requests, models, GPU summary, health score, APIs and alerts."""
    c = latest()
    svc = services()
    gpu = gpu_document(c)
    loaded = {m.name: m for m in c.snapshot.models}
    alerts = _alerts_now(c)
    host = c.host
    body: dict[str, Any] = {
        "status": {"status": c.health.status, "timestamp": iso_utc(c.at)},
        "collected_at": iso_utc(c.at),
        "requests": _active_requests(),
        "models": [{"name": spec.name, "size": spec.size_bytes, "loaded": spec.name in loaded,
                    **({"context_length": loaded[spec.name].context_length,
                        "running": loaded[spec.name].running, "waiting": loaded[spec.name].waiting}
                       if spec.name in loaded else {})} for spec in svc.catalogue.all()],
        "gpu_metrics": {key: gpu[key] for key in ("gpus", "total_memory_used", "total_memory_available",
                                                  "average_temperature", "average_utilization", "thermal_status",
                                                  "gpu_available", "driver_version", "cuda_version")
                        } | ({"message": gpu["message"]} if "message" in gpu else {}),
        "health": c.health.to_dict(),
        "host": _present({"cpu_percent": _r(host.cpu_percent), "memory_percent": _r(host.memory_percent),
                          "memory_used_gb": _r(host.memory_used_bytes / GB if host.memory_used_bytes else None),
                          "memory_total_gb": _r(host.memory_total_bytes / GB if host.memory_total_bytes else None),
                          "disk_percent": _r(host.disk_percent)}),
        "active_requests": c.snapshot.running, "queued_requests": c.snapshot.waiting,
        "apis": {"overallHealth": c.api_health.get("overallHealth"),
                 "error_rate_percent": _r(c.error_rate_percent, 2),
                 "average_response_time": _r(c.response_time_ms)},
        "alerts": {"firing": [a for a in alerts if a["state"] == "firing"],
                   "pending": [a for a in alerts if a["state"] == "pending"],
                   "count": sum(1 for a in alerts if a["state"] == "firing")},
        "optimization_score": round(c.optimization.score, 1),
        "store": c.store_status,
    }
    since = request.args.get("since", "")
    if since:
        body["series"] = _series(since, request.args.get("step", ""))
    return jsonify(body)


@bp.get("/api/metrics/apis")
def metrics_apis():
    """Per endpoint over the collector's window (§2.7), with overallHealth."""
    c = latest()
    return jsonify({**c.api_health, "collected_at": iso_utc(c.at)})


@bp.get("/api/metrics/optimization")
def metrics_optimization():
    """The hardware optimization score and its prioritized recommendations (§2.8; the scoring is ours)."""
    c = latest()
    opt = c.optimization
    return jsonify({
        "timestamp": iso_utc(c.at), "score": round(opt.score, 1), "optimal": opt.optimal,
        "recommendations": [{"rule": r.rule, "category": r.category, "priority": r.priority,
                             "message": r.message, "impact": r.impact, "inputs": r.inputs}
                            for r in opt.recommendations],
        "kpis": kpis(c, services().settings)})


@bp.get("/gpu")
def gpu_3090():
    """The 3090 companion API's first-GPU document (§5.3.9); `GPU query failed: …` without one, as a 503:
    a machine without a GPU is not a server fault (the seed answers 500)."""
    c = latest()
    first = c.gpus[0] if c.gpus else None
    if first is None:
        return jsonify({"detail": f"GPU query failed: {no_gpu_message(c)}"}), 503
    if first.lost:
        return jsonify({"detail": f"GPU query failed: GPU 0 is lost ({first.error or 'fell off the bus'})"}), 503

    def integer(value: Optional[float]) -> Optional[int]:
        return None if value is None else int(round(value))
    return jsonify(_present({
        "name": first.name, "driver_version": c.driver_version,
        "memory_total_mb": _mb(first.memory_total_bytes), "memory_used_mb": _mb(first.memory_used_bytes),
        "utilization_gpu": integer(first.utilization_percent),
        "utilization_mem": integer(first.memory_utilization_percent),
        "temperature_gpu": integer(first.temperature_celsius),
        "power_draw_w": _r(first.power_watts, 2), "power_limit_w": _r(first.power_limit_watts, 2),
        "fan_speed_pct": integer(first.fan_speed_percent)}))


_disk_lock = threading.Lock()
_disk_cache: tuple[float, list[dict[str, Any]]] = (0.0, [])


def mounted_disks() -> list[dict[str, Any]]:
    """One entry per mounted partition (unreadable ones skipped), cached DISK_CACHE_S: the collection
    samples only the data dir's disk, and /system's list is not worth a statvfs per partition per call."""
    global _disk_cache
    with _disk_lock:
        at, disks = _disk_cache
        if time.monotonic() - at < DISK_CACHE_S and at:
            return disks
        try:
            import psutil
            partitions = psutil.disk_partitions(all=False)
        except Exception:
            partitions = []
        disks, seen = [], set()
        for part in partitions:
            if part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except Exception:  # permission denied, a vanished mount
                continue
            disks.append({"mount": part.mountpoint, "used_gb": round(usage.used / GB, 1),
                          "total_gb": round(usage.total / GB, 1), "percent": usage.percent})
        _disk_cache = (time.monotonic(), disks)
        return disks


@bp.get("/system")
def system_3090():
    """The 3090 companion API's host document (§5.3.9): CPU load as a 0–1 fraction, RAM in GB (10⁹ bytes)."""
    host = latest().host
    return jsonify(_present({
        "cpu_load": None if host.cpu_percent is None else round(host.cpu_percent / 100.0, 2),
        "ram_used_gb": _r(host.memory_used_bytes / GB if host.memory_used_bytes is not None else None),
        "ram_total_gb": _r(host.memory_total_bytes / GB if host.memory_total_bytes is not None else None),
        "ram_percent": host.memory_percent, "disk": mounted_disks()}))


@bp.get("/api/alerts")
def alerts():
    """Active alerts (the last recorded transition of each is not a resolution), the recent history, and
    what the last collection is evaluating (pending and firing, from memory)."""
    svc = services()
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise ApiError("invalid_request", "limit must be an integer", param="limit") from None
    history = svc.alert_history
    collection = svc.monitor.latest if svc.monitor is not None else None
    body = {"timestamp": iso_utc(time.time()),
            "active": history.active() if history is not None else [],
            "history": history.recent(limit) if history is not None else [],
            "evaluating": _alerts_now(collection) if collection is not None else [],
            "store": history.status() if history is not None else {"state": "off"}}
    return jsonify(body)
