"""/dashboard/gpu: every GPU now (thermal band, utilization, memory, power against limit, fan, clocks,
throttle reasons) and its history from the metrics store over 1 h, 24 h or 7 d."""
from __future__ import annotations

import json
import time
from typing import Any

from flask import render_template
from flask import request

from ollama_server.dashboard import charts
from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.export import table
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import with_version
from ollama_server.dashboard.overview import latest
from ollama_server.monitoring.health_score import thermal_status
from ollama_server.services import services

# range -> (seconds back, bucket): about 240-340 points per line, enough for a chart and cheap to draw.
RANGES = {"1h": (3600, 15), "24h": (86400, 300), "7d": (7 * 86400, 1800)}
HISTORY = (("llm_gpu_temperature_celsius", "Temperature", (80.0, "critical 80 °C")),
           ("llm_gpu_utilization_ratio", "Utilization", None),
           ("llm_gpu_memory_used_bytes", "Memory used", None),
           ("llm_gpu_power_watts", "Power draw", None))


def _percent(part, whole):
    return round(100.0 * part / whole, 1) if part is not None and whole else None


@table("gpus")
def gpu_rows() -> list[dict[str, Any]]:
    """One row per GPU from the last collection, with the seed's thermal band."""
    c = latest()
    if c is None:
        return []
    rows = []
    for g in c.gpus:
        rows.append({"index": g.index, "name": g.name, "uuid": g.uuid, "lost": g.lost, "error": g.error,
                     "temperature_celsius": g.temperature_celsius, "thermal_status": thermal_status(g.temperature_celsius),
                     "utilization_percent": g.utilization_percent, "memory_used_bytes": g.memory_used_bytes,
                     "memory_total_bytes": g.memory_total_bytes,
                     "memory_percent": _percent(g.memory_used_bytes, g.memory_total_bytes),
                     "power_watts": g.power_watts, "power_limit_watts": g.power_limit_watts,
                     "power_percent": _percent(g.power_watts, g.power_limit_watts),
                     "fan_speed_percent": g.fan_speed_percent, "clock_graphics_mhz": g.clock_graphics_mhz,
                     "clock_sm_mhz": g.clock_sm_mhz, "clock_memory_mhz": g.clock_memory_mhz,
                     "throttle_reasons": list(g.throttle_reasons) if g.throttle_reasons is not None else None,
                     "pcie_generation": g.pcie_generation, "pcie_width": g.pcie_width})
    return rows


def gpus_data() -> dict[str, Any]:
    c = latest()
    return {"gpus": gpu_rows(), "collected": c is not None, "reason": c.gpu_reason if c else "",
            "driver_version": c.driver_version if c else None, "cuda_version": c.cuda_version if c else None}


def chosen_range() -> str:
    value = request.args.get("range", "1h")
    return value if value in RANGES else "1h"


def history_data(range_name: str) -> dict[str, Any]:
    """One line per GPU per metric, from the store (roll-ups beyond the raw window); figures come later."""
    store = services().monitor.store if services().monitor is not None else None
    seconds, step = RANGES[range_name]
    since = time.time() - seconds
    series = []
    for metric, title, threshold in HISTORY:
        lines = {}
        if store is not None:
            for labels_json, points in store.series_by_labels(metric, since, step).items():
                labels = json.loads(labels_json)
                lines[f"GPU {labels.get('gpu', '?')}"] = points
        series.append((metric, title, threshold, dict(sorted(lines.items()))))
    return {"range": range_name, "ranges": list(RANGES), "series": series}


def with_figures(data: dict[str, Any]) -> dict[str, Any]:
    """The history with its Plotly figures (built only when the fragment is sent)."""
    figures = [{"id": metric, "json": charts.time_series(metric, lines, f"{title} · last {data['range']}", threshold)}
               for metric, title, threshold, lines in data["series"]]
    return {"range": data["range"], "ranges": data["ranges"], "figures": figures}


@bp.get("/gpu")
def gpu():
    range_name = chosen_range()
    return render_template("pages/gpu.html", now_part=with_version(gpus_data()),
                           history_part=with_version(history_data(range_name), with_figures))


@bp.get("/partials/gpus")
def gpus_partial():
    return render_fragment("gpus", gpus_data())


@bp.get("/partials/gpu-history")
def gpu_history_partial():
    return render_fragment("gpu_history", history_data(chosen_range()), with_figures)
