"""Monitor: one collection every `metrics_interval` — GPUs, host, request records, health score, alerts —
kept as an immutable Collection that /metrics and the JSON APIs read (a scrape never touches NVML or
SQLite), and written to the metrics store."""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Optional

from ollama_server.engine.records import RequestRecord
from ollama_server.engine.snapshot import EngineSnapshot
from ollama_server.monitoring import catalogue
from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alerts import FIRING
from ollama_server.monitoring.alerts import AlertState
from ollama_server.monitoring.alerts import Transition
from ollama_server.monitoring.alerts import evaluate
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.gpu import GpuSample
from ollama_server.monitoring.health_score import HealthScore
from ollama_server.monitoring.health_score import Optimization
from ollama_server.monitoring.health_score import health_score
from ollama_server.monitoring.health_score import optimization
from ollama_server.monitoring.host import HostReader
from ollama_server.monitoring.host import HostSample
from ollama_server.monitoring.requests_agg import Aggregate
from ollama_server.monitoring.requests_agg import RequestAggregator
from ollama_server.storage.metrics import MetricsStore
from ollama_server.storage.metrics import Sample as StoredSample

log = logging.getLogger(__name__)
RECENT_ERRORS = 50  # failed/rejected requests kept for the dashboard's "recent errors"


@dataclass(frozen=True)
class Collection:
    """Everything one collection read; immutable, so readers never see half of one."""

    at: float
    gpus: tuple[GpuSample, ...]
    gpu_available: bool
    gpu_reason: str
    driver_version: Optional[str]
    cuda_version: Optional[str]
    host: HostSample
    snapshot: EngineSnapshot
    aggregates: tuple[Aggregate, ...]
    api_health: dict
    error_rate_percent: Optional[float]
    response_time_ms: Optional[float]
    health: HealthScore
    optimization: Optimization
    alerts: tuple[tuple[tuple[str, tuple], AlertState], ...]  # ((rule, labels), state) pending or firing
    samples: tuple[catalogue.Sample, ...]
    store_status: dict
    recent_errors: tuple[RequestRecord, ...] = ()  # newest first: failed and rejected requests, with their ids

    @property
    def firing(self) -> list[tuple[tuple[str, tuple], AlertState]]:
        return [(key, state) for key, state in self.alerts if state.phase == FIRING]


def _window_rates(aggregates: Iterable[Aggregate]) -> tuple[Optional[float], Optional[float]]:
    """(error rate %, average response ms) over every endpoint in the window; None without requests."""
    successful = failed = 0
    weighted_s = counted = 0.0
    for agg in aggregates:
        successful += agg.successful
        failed += agg.failed
        if agg.latency_avg_s is not None:
            weighted_s += agg.latency_avg_s * agg.count
            counted += agg.count
    judged = successful + failed
    error_rate = failed / judged * 100.0 if judged else None
    return error_rate, (weighted_s / counted * 1000.0 if counted else None)


def alert_values(samples: Iterable[catalogue.Sample], host: HostSample, gpus: Iterable[GpuSample],
                 error_rate: Optional[float], response_ms: Optional[float]) -> dict[tuple[str, tuple], float]:
    """Every catalogue sample by its name, plus the seed's rule names in the seed's units (percent, °C, ms)."""
    values: dict[tuple[str, tuple], float] = {(s.metric.name, s.labels): s.value for s in samples}
    seed = {"cpu_usage": host.cpu_percent, "memory_usage": host.memory_percent,
            "error_rate": error_rate, "response_time": response_ms}
    values.update({(name, ()): float(v) for name, v in seed.items() if v is not None})
    for gpu in gpus:
        if not gpu.lost and gpu.temperature_celsius is not None:
            values[("gpu_temperature", (("gpu", str(gpu.index)),))] = float(gpu.temperature_celsius)
    return values


class Monitor:
    """Collects on the scheduler's thread (one at a time); `latest` is what every reader sees."""

    def __init__(self, engine: Any, gpu: GpuReader, host: HostReader, store: Optional[MetricsStore],
                 rules: Iterable[Rule] = (), on_transitions: Optional[Callable[[list[Transition]], None]] = None,
                 clock: Callable[[], float] = time.time, window_s: float = 300.0, compat_metrics: bool = True,
                 history: Any = None):
        self.engine = engine
        self.gpu = gpu
        self.host = host
        self.store = store
        self.rules = tuple(rules)
        self.on_transitions = on_transitions
        self.clock = clock
        self.compat_metrics = compat_metrics
        self.history = history  # alert transitions in SQLite, pruned with the roll-ups' retention
        self.aggregator = RequestAggregator(window_s, clock)
        self.record_listeners: list[Callable[[list[RequestRecord]], None]] = []  # e.g. /metrics histograms
        self.latest: Optional[Collection] = None
        self._errors: collections.deque[RequestRecord] = collections.deque(maxlen=RECENT_ERRORS)
        self._states: dict = {}
        self._lock = threading.Lock()  # a manual collect (tests, /api/metrics?refresh) never overlaps the job

    def collect_once(self) -> Collection:
        """Read everything once, evaluate the alerts, store the samples; never raises for a sick store."""
        with self._lock:
            now = self.clock()
            records, dropped = self.engine.records.since(self.aggregator.last_seq)
            self.aggregator.add(records, dropped)
            self._errors.extend(r for r in records if r.outcome in ("failed", "rejected"))
            for listener in self.record_listeners:
                listener(records)
            gpus = tuple(self.gpu.read())
            host = self.host.read()
            snapshot = self.engine.snapshot()
            aggregates = tuple(self.aggregator.aggregates())
            error_rate, response_ms = _window_rates(aggregates)
            firing_before = sum(1 for state in self._states.values() if state.phase == FIRING)
            temperatures = [g.temperature_celsius for g in gpus if not g.lost and g.temperature_celsius is not None]
            utilizations = [g.utilization_percent for g in gpus if not g.lost and g.utilization_percent is not None]
            vram = [g.memory_used_bytes / g.memory_total_bytes * 100.0 for g in gpus
                    if not g.lost and g.memory_used_bytes is not None and g.memory_total_bytes]
            health = health_score(host.cpu_percent, host.memory_percent, max(temperatures, default=None),
                                  error_rate, response_ms, active_alerts=firing_before)
            tuning = optimization(max(utilizations, default=None) if snapshot.running else None,
                                  max(vram, default=None), response_ms)
            readings = catalogue.samples_from(gpus, host, snapshot, driver_version=self.gpu.driver_version,
                                              cuda_version=self.gpu.cuda_version, health=health,
                                              optimization=tuning.score, compat=self.compat_metrics)
            readings += catalogue.window_samples_from(aggregates)
            self._states, transitions = evaluate(self.rules, alert_values(readings, host, gpus, error_rate,
                                                                          response_ms), self._states, now)
            if transitions and self.on_transitions is not None:
                self.on_transitions(transitions)
            alerts = tuple(sorted(self._states.items(), key=lambda item: item[0]))
            readings += catalogue.health_samples_from(alerts=[
                {"alert": key[0], "severity": state.severity or "warning", "state": state.phase}
                for key, state in alerts])
            store_status = self._store(readings, now)
            self.latest = Collection(
                at=now, gpus=gpus, gpu_available=bool(self.gpu.available), gpu_reason=self.gpu.reason or "",
                driver_version=self.gpu.driver_version, cuda_version=self.gpu.cuda_version, host=host,
                snapshot=snapshot, aggregates=aggregates, api_health=self.aggregator.api_health(),
                error_rate_percent=error_rate, response_time_ms=response_ms, health=health, optimization=tuning,
                alerts=alerts, samples=tuple(readings), store_status=store_status,
                recent_errors=tuple(reversed(self._errors)))
            return self.latest

    def _store(self, readings: list[catalogue.Sample], now: float) -> dict:
        if self.store is None:
            return {"state": "off"}
        self.store.insert(StoredSample(s.metric.name, dict(s.labels), s.value, now) for s in readings)
        return self.store.status()

    def maintain(self) -> None:
        """Roll up and prune the store and the alert history (its own job: it may hold the write lock for seconds)."""
        now = self.clock()
        if self.store is not None:
            self.store.maintain(now)
            if self.history is not None:
                self.history.prune(now - self.store.rollup_window_s)
