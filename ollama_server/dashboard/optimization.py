"""/dashboard/optimization: the optimization score, its prioritized recommendations and the KPIs, and the
cost calculator (this box's measured tokens/s → cost per million tokens, monthly cost, payback)."""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any
from typing import Mapping

from flask import render_template
from flask import request

from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.export import table
from ollama_server.dashboard.fragments import render_fragment
from ollama_server.dashboard.fragments import with_version
from ollama_server.dashboard.overview import latest
from ollama_server.monitoring.cost import CostInputError
from ollama_server.monitoring.cost import CostInputs
from ollama_server.monitoring.cost import estimate
from ollama_server.monitoring.kpis import kpis
from ollama_server.services import services

# Starting values a user overwrites: a mid-range GPU box, a typical EU household price, a cheap hosted model.
DEFAULTS = {"hardware_price": 2000.0, "electricity_price_per_kwh": 0.30, "utilization_percent": 50.0,
            "api_price_per_million_tokens": 0.60, "amortization_months": 36.0}
CPU_BOX_WATTS = 65.0  # no GPU: a desktop CPU's package power under load, for the default only
LABELS = {"hardware_price": "Hardware price", "power_watts": "Power draw under load (W)",
          "idle_watts": "Idle draw (W)", "electricity_price_per_kwh": "Electricity price per kWh",
          "utilization_percent": "Utilization (%)", "tokens_per_second": "Measured tokens/s",
          "api_price_per_million_tokens": "Hosted API price per million tokens",
          "amortization_months": "Amortization (months)"}


def measured_tokens_per_second() -> tuple[float | None, str]:
    """This box's decode speed: the best recent benchmark, else the best endpoint in the window."""
    svc = services()
    benchmarks = getattr(svc, "benchmarks", None)
    best = None
    if benchmarks is not None:
        for spec in svc.store.all():
            result = benchmarks.latest(spec.name)
            if result and result.get("status") != "error" and result.get("decode_tokens_per_second"):
                if best is None or result["decode_tokens_per_second"] > best[0]:
                    best = (result["decode_tokens_per_second"], f"benchmark of {spec.name}")
    if best:
        return round(best[0], 1), best[1]
    c = latest()
    rates = [a.decode_tokens_per_second for a in (c.aggregates if c else ()) if a.decode_tokens_per_second]
    if rates:
        return round(max(rates), 1), "requests in the last window"
    return None, "nothing measured yet: run a benchmark on the Models page"


def default_inputs() -> dict[str, float]:
    """Power from the GPUs' limits and current draw (or a CPU box), tokens/s as measured here."""
    c = latest()
    gpus = [g for g in (c.gpus if c else ()) if not g.lost]
    limits = [g.power_limit_watts for g in gpus if g.power_limit_watts]
    draws = [g.power_watts for g in gpus if g.power_watts is not None]
    tps, _ = measured_tokens_per_second()
    power = round(sum(limits)) if limits else CPU_BOX_WATTS
    idle = min(round(sum(draws)), power) if draws else 0.0
    return {**DEFAULTS, "power_watts": float(power), "idle_watts": float(idle), "tokens_per_second": tps or 1.0}


def parse_inputs(args: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The calculator's fields from a query string over the defaults; errors by field."""
    values: dict[str, Any] = dict(default_inputs())
    errors: dict[str, str] = {}
    for item in fields(CostInputs):
        if item.name not in args:
            continue
        text = args[item.name].strip()
        try:
            number = float(text)
        except ValueError:
            errors[item.name] = f"must be a number, got {text[:20]!r}"
            values[item.name] = text
            continue
        values[item.name] = number
        if not math.isfinite(number):
            errors[item.name] = "must be a finite number"
    return values, errors


def cost_data(args: Mapping[str, str]) -> dict[str, Any]:
    values, errors = parse_inputs(args)
    result = None
    if not errors:
        try:
            result = estimate(CostInputs(**values)).to_dict()
        except CostInputError as exc:
            errors[exc.field] = exc.message
    tps, source = measured_tokens_per_second()
    return {"values": values, "errors": errors, "result": result, "labels": LABELS,
            "measured_tps": tps, "measured_source": source}


@table("recommendations")
def recommendation_rows() -> list[dict[str, Any]]:
    c = latest()
    if c is None:
        return []
    return [{"priority": r.priority, "category": r.category, "rule": r.rule, "message": r.message,
             "impact": r.impact, "inputs": r.inputs} for r in c.optimization.recommendations]


def score_data() -> dict[str, Any]:
    c = latest()
    if c is None:
        return {"collected": False}
    return {"collected": True, "score": round(c.optimization.score, 1), "optimal": c.optimization.optimal,
            "recommendations": sorted(recommendation_rows(), key=lambda r: r["priority"]),
            "kpis": kpis(c, services().settings)}


@bp.get("/optimization")
def optimization():
    return render_template("pages/optimization.html", score_part=with_version(score_data()),
                           cost_part=with_version(cost_data(request.args)))


@bp.get("/partials/optimization-score")
def optimization_score_partial():
    return render_fragment("optimization_score", score_data())


@bp.get("/partials/cost")
def cost_partial():
    data = cost_data(request.args)
    response = render_fragment("cost", data)
    if data["errors"] and not isinstance(response, tuple):
        response.status_code = 422
    return response
