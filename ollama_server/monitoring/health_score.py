"""The seed's 0–100 health score, thermal bands and optimization rules, as pure functions (a heuristic).

Health score (seed-contracts.md §2.4), component by component, each clamped to 0–100:
  cpu = 100 − CPU %;  memory = 100 − memory %;  gpu = 100 − temperature / max × 100;
  errors = 100 − error-rate % × 10;  response = 100 − (response ms − 5000) / 250.
score = clamp(weighted average − 20 × active alerts, 0, 100); > 80 healthy, 60–80 warning, < 60 critical.
Choices where the seed is silent: equal weights (its neutral reading); "max" is 85 °C (the critical
alert threshold) unless a device limit is passed; the hottest GPU counts; an input that is None (no GPU,
no requests yet) drops out and the other weights renormalise, so a CPU-only server is not "unhealthy".
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Optional

COMPONENTS = ("cpu", "memory", "gpu", "errors", "response")
SEED_WEIGHTS: Mapping[str, float] = {name: 1.0 for name in COMPONENTS}  # the seed gives none: equal
ALERT_PENALTY = 20.0
GPU_MAX_CELSIUS = 85.0            # the seed's gpu_temperature critical threshold (§2.5)
RESPONSE_BASELINE_MS = 5000.0     # at or under this the response component is 100
RESPONSE_MS_PER_POINT = 250.0     # so 30 000 ms scores 0
HIGH_RESPONSE_MS = 10000.0        # the seed's response_time warning threshold: "high response time"
THERMAL_BANDS = ((70.0, "good"), (80.0, "warning"))  # below the bound -> status; then critical ≤ 85 < emergency


def clamp(value: float, low: float = 0.0, high: float = 100.0) -> float:
    """`value` limited to [low, high]."""
    return max(low, min(high, value))


@dataclass(frozen=True)
class Component:
    """One component: its clamped score, the raw (unclamped) value, its weight and its inputs."""

    name: str
    score: float
    raw: float
    weight: float
    inputs: dict[str, Any]
    formula: str


@dataclass(frozen=True)
class HealthScore:
    """The final score and status, and everything that went into it."""

    score: float
    status: str
    weighted_average: Optional[float]
    active_alerts: int
    alert_penalty: float
    components: tuple[Component, ...]
    skipped: tuple[str, ...] = ()   # components with no input, left out of the average

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, components keyed by name."""
        return {"score": round(self.score, 1), "status": self.status, "weighted_average": self.weighted_average,
                "active_alerts": self.active_alerts, "alert_penalty": self.alert_penalty,
                "skipped": list(self.skipped),
                "components": {c.name: {"score": round(c.score, 2), "raw": c.raw, "weight": c.weight,
                                        "inputs": c.inputs, "formula": c.formula} for c in self.components}}


def health_status(score: float) -> str:
    """> 80 healthy, 60–80 (both ends) warning, < 60 critical."""
    if score > 80:
        return "healthy"
    return "warning" if score >= 60 else "critical"


def health_score(cpu_percent: Optional[float] = None, memory_percent: Optional[float] = None,
                 gpu_temperature_celsius: Optional[float] = None, error_rate_percent: Optional[float] = None,
                 response_time_ms: Optional[float] = None, active_alerts: int = 0,
                 gpu_max_celsius: float = GPU_MAX_CELSIUS,
                 weights: Optional[Mapping[str, float]] = None) -> HealthScore:
    """The seed's formula; with no input at all the score is 100 minus the alert penalty."""
    weights = dict(SEED_WEIGHTS if weights is None else weights)
    raw: dict[str, tuple[float, dict[str, Any], str]] = {}
    if cpu_percent is not None:
        raw["cpu"] = (100.0 - cpu_percent, {"cpu_percent": cpu_percent}, "100 - cpu_percent")
    if memory_percent is not None:
        raw["memory"] = (100.0 - memory_percent, {"memory_percent": memory_percent}, "100 - memory_percent")
    if gpu_temperature_celsius is not None:
        raw["gpu"] = (100.0 - gpu_temperature_celsius / gpu_max_celsius * 100.0,
                      {"temperature_celsius": gpu_temperature_celsius, "max_celsius": gpu_max_celsius},
                      "100 - temperature / max * 100")
    if error_rate_percent is not None:
        raw["errors"] = (100.0 - error_rate_percent * 10.0, {"error_rate_percent": error_rate_percent},
                         "100 - error_rate_percent * 10")
    if response_time_ms is not None:
        raw["response"] = (100.0 - (response_time_ms - RESPONSE_BASELINE_MS) / RESPONSE_MS_PER_POINT,
                           {"response_time_ms": response_time_ms}, "100 - (response_time_ms - 5000) / 250")
    components = tuple(Component(name, clamp(value), value, float(weights.get(name, 0.0)), inputs, formula)
                       for name in COMPONENTS if name in raw for value, inputs, formula in [raw[name]])
    total_weight = sum(c.weight for c in components)
    average = sum(c.score * c.weight for c in components) / total_weight if total_weight > 0 else None
    alerts = max(0, int(active_alerts))
    penalty = ALERT_PENALTY * alerts
    score = clamp((100.0 if average is None else average) - penalty)
    return HealthScore(score=score, status=health_status(score), weighted_average=average, active_alerts=alerts,
                       alert_penalty=penalty, components=components,
                       skipped=tuple(name for name in COMPONENTS if name not in raw))


def thermal_status(temperature_celsius: Optional[float]) -> str:
    """< 70 good, 70 ≤ t < 80 warning, 80 ≤ t ≤ 85 critical, > 85 emergency; None -> unknown."""
    if temperature_celsius is None:
        return "unknown"
    for bound, status in THERMAL_BANDS:
        if temperature_celsius < bound:
            return status
    return "critical" if temperature_celsius <= GPU_MAX_CELSIUS else "emergency"


def machine_thermal_status(temperatures: Iterable[Optional[float]]) -> str:
    """The band of the hottest GPU (one hot card is the problem, an average would hide it)."""
    known = [t for t in temperatures if t is not None]
    return thermal_status(max(known)) if known else "unknown"


@dataclass(frozen=True)
class Recommendation:
    """One prioritized suggestion from §2.8's rules; priority 1 is the most urgent."""

    rule: str
    category: str          # Performance | Stability | Cost | Scaling
    priority: int
    message: str
    impact: str
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Optimization:
    """The 0–100 optimization score (100 − each recommendation's penalty) and its recommendations."""

    score: float
    recommendations: tuple[Recommendation, ...]

    @property
    def optimal(self) -> bool:
        return self.recommendations[0].rule == "optimal"


# The seed gives no formula for the score; these penalties (ours) rank the rules' urgency.
_PENALTY = {"reduce_context": 30.0, "more_gpu_layers": 20.0, "larger_batch": 15.0}


def optimization(gpu_utilization_percent: Optional[float] = None, memory_percent: Optional[float] = None,
                 response_time_ms: Optional[float] = None, high_response_ms: float = HIGH_RESPONSE_MS,
                 ) -> Optimization:
    """§2.8's rules: memory > 90 % first (OOM risk), then slow responses, then GPU utilization < 50 %.

    `memory_percent` is the fullest GPU's VRAM use (the OOM that a smaller context avoids); pass
    `gpu_utilization_percent=None` while no request runs, or an idle server is told to batch more.
    """
    found: list[Recommendation] = []
    if memory_percent is not None and memory_percent > 90:
        found.append(Recommendation("reduce_context", "Stability", 1, "Reduce the context size to avoid OOM",
                                    "Avoids out-of-memory failures", {"memory_percent": memory_percent}))
    if response_time_ms is not None and response_time_ms > high_response_ms:
        found.append(Recommendation("more_gpu_layers", "Performance", 2, "Increase the GPU layers or add GPUs",
                                    "Lower latency", {"response_time_ms": response_time_ms,
                                                      "threshold_ms": high_response_ms}))
    if gpu_utilization_percent is not None and gpu_utilization_percent < 50:
        found.append(Recommendation("larger_batch", "Performance", 3,
                                    "Increase the batch size for better throughput", "Higher throughput",
                                    {"gpu_utilization_percent": gpu_utilization_percent}))
    score = clamp(100.0 - sum(_PENALTY[r.rule] for r in found))
    if not found:
        found.append(Recommendation("optimal", "Performance", 9, "Keep the current configuration",
                                    "None needed"))
    return Optimization(score=score, recommendations=tuple(sorted(found, key=lambda r: r.priority)))
