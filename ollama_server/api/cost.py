"""GET /api/dashboard/cost: the cost calculator (monitoring/cost.py) over query parameters."""
from __future__ import annotations

import math
from dataclasses import MISSING
from dataclasses import fields

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.monitoring.cost import DAYS_PER_MONTH
from ollama_server.monitoring.cost import CostInputError
from ollama_server.monitoring.cost import CostInputs
from ollama_server.monitoring.cost import estimate

bp = Blueprint("cost", __name__)
install(bp, PLAIN)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ApiError("invalid_request", f"{name}: must be a number, not {text[:50]!r}", param=name) from None
    if not math.isfinite(value):
        raise ApiError("invalid_request", f"{name}: must be a finite number", param=name)
    return value


@bp.get("/api/dashboard/cost")
def cost():
    """The estimate for the given inputs (every CostInputs field without a default is required)."""
    values = {}
    for item in fields(CostInputs):
        text = request.args.get(item.name)
        if text is None or text.strip() == "":
            if item.default is MISSING:
                raise ApiError("invalid_request", f"{item.name}: is required", param=item.name)
            continue
        values[item.name] = _number(item.name, text.strip())
    inputs = CostInputs(**values)
    try:
        result = estimate(inputs)
    except CostInputError as exc:
        raise ApiError("invalid_request", str(exc), param=exc.field) from None
    return jsonify({"inputs": {item.name: getattr(inputs, item.name) for item in fields(CostInputs)},
                    "estimate": result.to_dict(),
                    "assumptions": {"days_per_month": DAYS_PER_MONTH,
                                    "energy": "draw = idle_watts + (power_watts - idle_watts) x utilization, "
                                              "all month; payback = hardware_price / (API cost - electricity)"}})
