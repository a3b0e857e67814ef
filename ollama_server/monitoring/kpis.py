"""§2.8's five key performance indicators from one collection's window (pure)."""
from __future__ import annotations

from typing import Any
from typing import Optional


def _r(value: Optional[float], digits: int = 1) -> Optional[float]:
    return None if value is None else round(value, digits)


def kpis(c: Any, settings: Any) -> dict[str, Any]:
    """Throughput, p95 latency, GPU utilization, success rate and concurrent capacity of a Collection."""
    successful = sum(a.successful for a in c.aggregates)
    failed = sum(a.failed for a in c.aggregates)
    p95 = max((a.latency_p95_s for a in c.aggregates if a.latency_p95_s is not None), default=None)
    tokens = [a.tokens_per_second for a in c.aggregates if a.tokens_per_second is not None]
    utilization = [g.utilization_percent for g in c.gpus if not g.lost and g.utilization_percent is not None]
    return {"throughput_tokens_per_second": _r(max(tokens), 2) if tokens else None,
            "latency_p95_ms": _r(p95 * 1000.0) if p95 is not None else None,
            "efficiency_gpu_utilization_percent": _r(sum(utilization) / len(utilization)) if utilization else None,
            "reliability_success_rate_percent": _r(successful / (successful + failed) * 100.0)
            if successful + failed else None,
            "scalability_concurrent_capacity": settings.parallel_slots * settings.max_loaded_models}
