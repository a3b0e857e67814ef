"""The dashboard's cost calculator: what running a model locally costs per month and per million tokens,
against a hosted API billing the same tokens (pure arithmetic, no I/O).

Energy assumption: the machine draws `idle_watts` whenever it is on (all month) and `power_watts` while
generating; at `utilization_percent` the average draw is idle + (power - idle) × utilization. With
idle_watts 0 (the default) the machine is assumed off when idle, so only the busy share is billed.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import Optional

DAYS_PER_MONTH = 30.44  # the mean Gregorian month (365.25 / 12)
HOURS_PER_MONTH = DAYS_PER_MONTH * 24.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0


class CostInputError(ValueError):
    """An input the calculator cannot use; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CostInputs:
    """What the calculator needs: prices in one currency, power in watts, throughput in tokens/s."""

    hardware_price: float
    power_watts: float
    electricity_price_per_kwh: float
    utilization_percent: float
    tokens_per_second: float
    api_price_per_million_tokens: float
    amortization_months: float = 36.0
    idle_watts: float = 0.0


@dataclass(frozen=True)
class CostEstimate:
    """Monthly figures and per-million-token costs; payback_months is None when local never pays back."""

    tokens_per_month: float
    energy_kwh_per_month: float
    average_watts: float
    electricity_per_month: float
    amortization_per_month: float
    local_cost_per_month: float
    electricity_cost_per_million_tokens: Optional[float]
    total_cost_per_million_tokens: Optional[float]
    api_cost_per_month: float
    monthly_saving: float              # API cost minus electricity: what pays the hardware back
    net_monthly_saving: float          # API cost minus electricity and amortization
    payback_months: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready fields (payback "never" stays None)."""
        return asdict(self)


def validate(inputs: CostInputs) -> CostInputs:
    """The inputs unchanged, or CostInputError naming the first bad field."""
    for item in fields(CostInputs):
        value = getattr(inputs, item.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CostInputError(item.name, "must be a number")
        if not math.isfinite(value):
            raise CostInputError(item.name, "must be a finite number")
        if value < 0:
            raise CostInputError(item.name, "must not be negative")
    if inputs.utilization_percent > 100:
        raise CostInputError("utilization_percent", "must be between 0 and 100")
    if inputs.tokens_per_second <= 0:
        raise CostInputError("tokens_per_second", "must be greater than 0")
    if inputs.amortization_months <= 0:
        raise CostInputError("amortization_months", "must be greater than 0")
    if inputs.idle_watts > inputs.power_watts:
        raise CostInputError("idle_watts", "must not exceed power_watts")
    return inputs


def estimate(inputs: CostInputs) -> CostEstimate:
    """The monthly cost of serving at the given utilization, and how it compares with the hosted API."""
    validate(inputs)
    share = inputs.utilization_percent / 100.0
    tokens = inputs.tokens_per_second * SECONDS_PER_MONTH * share
    watts = inputs.idle_watts + (inputs.power_watts - inputs.idle_watts) * share
    kwh = watts * HOURS_PER_MONTH / 1000.0
    electricity = kwh * inputs.electricity_price_per_kwh
    amortization = inputs.hardware_price / inputs.amortization_months
    local = electricity + amortization
    millions = tokens / 1e6
    api = millions * inputs.api_price_per_million_tokens
    saving = api - electricity  # the hardware is the investment being paid back, so it is not a running cost
    payback = inputs.hardware_price / saving if saving > 0 else None
    return CostEstimate(
        tokens_per_month=tokens, energy_kwh_per_month=kwh, average_watts=watts, electricity_per_month=electricity,
        amortization_per_month=amortization, local_cost_per_month=local,
        electricity_cost_per_million_tokens=electricity / millions if millions else None,
        total_cost_per_million_tokens=local / millions if millions else None,
        api_cost_per_month=api, monthly_saving=saving, net_monthly_saving=api - local,
        payback_months=payback)
