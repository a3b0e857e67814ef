"""/dashboard/apis: per dialect and endpoint — requests, success rate, latency p50/p95/p99, time to first
token, tokens/s — charts over time from the store, and the last errors with their request ids."""
from __future__ import annotations

import json
import time
from typing import Any

from flask import render_template

from ollama_server.dashboard import charts
from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.export import table
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import with_version
from ollama_server.dashboard.gpu import RANGES
from ollama_server.dashboard.gpu import chosen_range
from ollama_server.dashboard.overview import latest
from ollama_server.dashboard.overview import recent_errors
from ollama_server.services import services

# metric, title, how endpoints of one API combine at a moment (requests add up, slowest p95 counts)
CHARTS = (("llm_window_requests", "Requests in the 5-minute window", sum),
          ("llm_window_latency_p95_seconds", "Latency p95", max),
          ("llm_window_ttft_p50_seconds", "Time to first token p50", max),
          ("llm_window_decode_tokens_per_second", "Decode tokens/s", max))


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


@table("endpoints")
def endpoint_rows() -> list[dict[str, Any]]:
    """One row per (API, endpoint, model) over the collector's window."""
    c = latest()
    if c is None:
        return []
    rows = []
    for a in sorted(c.aggregates, key=lambda a: (a.dialect, a.endpoint, a.model)):
        rows.append({"api": a.dialect, "endpoint": a.endpoint, "model": a.model, "requests": a.count,
                     "succeeded": a.successful, "failed": a.failed,
                     "success_rate_percent": round(a.success_ratio * 100.0, 1) if a.success_ratio is not None else None,
                     "latency_p50_ms": _ms(a.latency_p50_s), "latency_p95_ms": _ms(a.latency_p95_s),
                     "latency_p99_ms": _ms(a.latency_p99_s), "ttft_p50_ms": _ms(a.ttft_p50_s),
                     "ttft_p95_ms": _ms(a.ttft_p95_s),
                     "tokens_per_second": round(a.tokens_per_second, 1) if a.tokens_per_second else None,
                     "decode_tokens_per_second": round(a.decode_tokens_per_second, 1)
                     if a.decode_tokens_per_second else None,
                     "outcomes": {k: v for k, v in a.outcomes.items() if v}})
    return rows


@table("api_errors")
def api_error_rows() -> list[dict[str, Any]]:
    return recent_errors(latest(), limit=None)


def table_data() -> dict[str, Any]:
    c = latest()
    health = c.api_health if c is not None else {}
    return {"rows": endpoint_rows(), "overall": health.get("overallHealth"), "collected": c is not None,
            "window_s": services().monitor.aggregator.window_s if services().monitor else None,
            "errors": recent_errors(c, limit=20)}


def charts_data(range_name: str) -> dict[str, Any]:
    """One figure per metric with a line per API (its endpoints and models combined)."""
    monitor = services().monitor
    seconds, step = RANGES[range_name]
    since = time.time() - seconds
    series = []
    for metric, title, combine in CHARTS:
        per_api: dict[str, dict[float, list[float]]] = {}
        if monitor is not None and monitor.store is not None:
            for labels_json, points in monitor.store.series_by_labels(metric, since, step).items():
                api = json.loads(labels_json).get("api", "?")
                for t, v in points:
                    per_api.setdefault(api, {}).setdefault(t, []).append(v)
        lines = {api: [(t, combine(vs)) for t, vs in sorted(buckets.items())] for api, buckets in sorted(per_api.items())}
        series.append((metric, title, lines))
    return {"range": range_name, "ranges": list(RANGES), "series": series}


def with_figures(data: dict[str, Any]) -> dict[str, Any]:
    """The series as Plotly figures (built only when the fragment is sent)."""
    figures = [{"id": metric, "json": charts.time_series(metric, lines, f"{title} · last {data['range']}")}
               for metric, title, lines in data["series"]]
    return {"range": data["range"], "ranges": data["ranges"], "figures": figures}


@bp.get("/apis")
def apis():
    return render_template("pages/apis.html", table_part=with_version(table_data()),
                           charts_part=with_version(charts_data(chosen_range()), with_figures))


@bp.get("/partials/api-table")
def api_table_partial():
    return render_fragment("api_table", table_data())


@bp.get("/partials/api-charts")
def api_charts_partial():
    return render_fragment("api_charts", charts_data(chosen_range()), with_figures)
