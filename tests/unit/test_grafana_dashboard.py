"""config/grafana-dashboard.json: an importable dashboard whose PromQL names only catalogue metrics."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ollama_server.monitoring.catalogue import METRICS

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana-dashboard.json"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# PromQL words that are not metric names (functions are recognised by the "(" that follows them).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
            "bool", "inf", "nan"}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # a collapsed row keeps its panels inside
    return out


def expressions(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names one PromQL expression selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)             # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                          # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                         # range selectors, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_]+\s*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word, rest = match.group(0), text[match.end():]
        if rest.lstrip().startswith("(") or word.lower() in KEYWORDS or word.startswith("$"):
            continue
        if match.start() > 0 and text[match.start() - 1] in "$.0123456789":
            continue  # a variable ($api) or part of a number (1e3)
        names.add(word)
    return names


def declared_series() -> set[str]:
    names = set()
    for metric in METRICS:
        names.add(metric.name)
        if metric.type == "histogram":
            names.update(metric.name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def test_the_parser_finds_metric_names_and_only_them():
    expr = ('histogram_quantile(0.95, sum by (api, le) (rate(llm_request_duration_seconds_bucket'
            '{instance=~"$instance", api=~"x|y"}[$__rate_interval]))) / on (api) group_left up')
    assert metric_names(expr) == {"llm_request_duration_seconds_bucket", "up"}
    assert metric_names("label_values(llm_gpu_up, gpu)") == {"llm_gpu_up"}


def test_it_is_an_importable_dashboard():
    dashboard = load()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"] and dashboard.get("id") is None
    (ds,) = [i for i in dashboard["__inputs"] if i["name"] == "DS_PROMETHEUS"]
    assert (ds["type"], ds["pluginId"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}" and target["refId"]


@pytest.mark.parametrize("expr", expressions(load()))
def test_every_expression_names_only_declared_metrics(expr):
    names = metric_names(expr)
    assert names, f"no metric in {expr!r}"
    assert names <= declared_series(), names - declared_series()


def test_it_covers_gpus_requests_tokens_queue_health_and_alerts():
    used = set().union(*(metric_names(e) for e in expressions(load())))
    assert {"llm_gpu_temperature_celsius", "llm_gpu_utilization_ratio", "llm_gpu_memory_used_bytes",
            "llm_gpu_power_watts", "llm_requests_total", "llm_request_duration_seconds_bucket",
            "llm_time_to_first_token_seconds_bucket", "llm_generated_tokens_total", "llm_active_requests",
            "llm_queued_requests", "llm_health_score", "llm_alerts_active", "llm_alert_state"} <= used
    titles = " ".join(p["title"] for p in panels(load())).lower()
    for word in ("temperature", "utilization", "vram", "power", "request rate", "p95 latency", "first token",
                 "tokens per second", "queued", "health score", "alert"):
        assert word in titles, word
