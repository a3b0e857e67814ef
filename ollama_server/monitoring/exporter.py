"""The Prometheus exposition of one app: request histograms and counters fed by the Monitor's record batches,
and gauges read from the Monitor's last Collection (a scrape never touches NVML, the engine or SQLite).

Every family comes from the catalogue (name, type, help, labels, buckets). The registry is the app's own
`CollectorRegistry`, never prometheus_client's global REGISTRY: two apps in one process (tests) never share
series. `_created` series are turned off (prometheus_client's `disable_created_metrics()`, process-wide):
the counters' start times say nothing a dashboard uses and double the series count.
"""
from __future__ import annotations

import logging
import threading
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Iterator
from typing import Optional

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import disable_created_metrics
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from ollama_server.engine.records import RequestRecord
from ollama_server.monitoring import catalogue
from ollama_server.monitoring.requests_agg import is_failure
from ollama_server.monitoring.requests_agg import is_success

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8 (Prometheus 2 and 3 parse it)

# The request families this module owns (the Collection's samples never carry them).
REQUEST_METRICS = ("llm_request_duration_seconds", "llm_time_to_first_token_seconds",
                   "llm_request_queue_time_seconds", "llm_requests_total", "llm_prompt_tokens_total",
                   "llm_generated_tokens_total")
COMPAT_REQUEST_METRICS = ("inference_requests_total", "inference_duration_seconds")
# Computed from the last Collection's window aggregates (the catalogue's samples_from cannot: it has no state).
TOKENS_PER_SECOND = "llm_generation_tokens_per_second"

# Label values a client can choose (the model of a refused request, the path of a 404) are capped: past
# this many distinct values per label, new ones are exposed as OVERFLOW, so a scan cannot grow the series.
LABEL_VALUE_LIMITS = {"model": 64, "endpoint": 128}
OVERFLOW = "other"


class _Bounded:
    """Distinct values seen per capped label; values past the cap read as OVERFLOW."""

    def __init__(self, limits: dict[str, int]):
        self.limits = dict(limits)
        self._seen: dict[str, set[str]] = {label: set() for label in limits}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        seen = self._seen.get(label)
        if seen is None:
            return value
        with self._lock:
            if value in seen:
                return value
            if len(seen) >= self.limits[label]:
                return OVERFLOW
            seen.add(value)
            return value


class _LatestCollector:
    """Gauge families built from the last Collection's samples, plus tokens/s from its aggregates."""

    def __init__(self, latest: Callable[[], Any], owned: Iterable[str]):
        self.latest = latest
        self.owned = frozenset(owned)

    def collect(self) -> Iterator[Any]:
        try:
            collection = self.latest()
        except Exception:  # a scrape answers with what it can, never a 500
            log.exception("could not read the last collection")
            return
        if collection is None:
            return  # no collection yet: the gauges are absent, the request families are still there
        try:
            families = self._families(collection)
        except Exception:
            log.exception("could not build the gauges of the last collection")
            return
        yield from families

    def _families(self, collection: Any) -> list[Any]:
        grouped: dict[str, list[catalogue.Sample]] = {}
        for sample in collection.samples:
            if sample.metric.name in self.owned or sample.metric.type == "histogram":
                continue
            grouped.setdefault(sample.metric.name, []).append(sample)
        tokens = _tokens_per_second(getattr(collection, "aggregates", ()))
        if tokens and TOKENS_PER_SECOND not in grouped:
            grouped[TOKENS_PER_SECOND] = tokens
        families = []
        for name, samples in grouped.items():
            metric = samples[0].metric
            labels = list(metric.labels)
            family_type = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
            family = family_type(metric.name, metric.description, labels=labels, unit=metric.unit)
            seen: set[tuple[str, ...]] = set()
            for sample in samples:
                values = tuple(dict(sample.labels).get(label, "") for label in labels)
                if values in seen:  # each (name, labelset) once, whatever the collection holds
                    continue
                seen.add(values)
                family.add_metric(list(values), sample.value)
            families.append(family)
        return families


def _tokens_per_second(aggregates: Iterable[Any]) -> list[catalogue.Sample]:
    """Generated tokens per second of request wall time over the window, by (api, model)."""
    metric = catalogue.metric(TOKENS_PER_SECOND)
    tokens: dict[tuple[str, str], float] = {}
    wall: dict[tuple[str, str], float] = {}
    for agg in aggregates:
        rate = getattr(agg, "tokens_per_second", None)
        if not rate or not agg.completion_tokens:
            continue
        key = (agg.dialect, agg.model)
        tokens[key] = tokens.get(key, 0.0) + agg.completion_tokens
        wall[key] = wall.get(key, 0.0) + agg.completion_tokens / rate  # the aggregate's wall time back
    return [catalogue.Sample(metric, (("api", api), ("model", model)), tokens[(api, model)] / wall[(api, model)])
            for api, model in sorted(tokens) if wall[(api, model)] > 0]


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header names OpenMetrics (Prometheus 2 asks for it first; curl does not)."""
    return any(part.split(";")[0].strip().lower() == "application/openmetrics-text"
               for part in (accept or "").split(","))


class Exporter:
    """One app's Prometheus registry; `observe` is a Monitor record listener, `render` answers a scrape."""

    def __init__(self, latest: Optional[Callable[[], Any]] = None, compat: bool = True,
                 label_limits: Optional[dict[str, int]] = None):
        disable_created_metrics()  # read when a counter is collected, so once here covers every scrape
        self.registry = CollectorRegistry(auto_describe=False)
        self.compat = compat
        self._bounded = _Bounded(LABEL_VALUE_LIMITS if label_limits is None else label_limits)
        names = REQUEST_METRICS + (COMPAT_REQUEST_METRICS if compat else ())
        self.metrics: dict[str, Any] = {name: self._build(catalogue.metric(name)) for name in names}
        self.registry.register(_LatestCollector(latest or (lambda: None), owned=names))

    @classmethod
    def for_monitor(cls, monitor: Any) -> "Exporter":
        """An exporter reading `monitor.latest` and fed by its record batches (registered here)."""
        exporter = cls(lambda: monitor.latest, compat=getattr(monitor, "compat_metrics", True))
        monitor.record_listeners.append(exporter.observe)
        return exporter

    def _build(self, metric: catalogue.Metric) -> Any:
        common = dict(name=metric.name, documentation=metric.description, labelnames=metric.labels,
                      unit=metric.unit, registry=self.registry)
        if metric.type == "histogram":
            return Histogram(buckets=metric.buckets, **common)
        if metric.type == "counter":
            return Counter(**common)
        raise ValueError(f"{metric.name}: a {metric.type} is read from the collection, not observed")

    def _child(self, name: str, **labels: str) -> Any:
        family = self.metrics[name]
        if not labels:
            return family
        return family.labels(**{key: self._bounded(key, value or "") for key, value in labels.items()})

    def observe(self, records: Iterable[RequestRecord]) -> None:
        """Fold a batch of new request records into the histograms and counters."""
        for record in records:
            try:
                self._observe_one(record)
            except Exception:  # one odd record never loses the rest of the batch
                log.exception("could not export request record %s", getattr(record, "seq", "?"))

    def _observe_one(self, record: RequestRecord) -> None:
        ids = {"api": record.dialect or "", "model": record.model or ""}
        self._child("llm_requests_total", endpoint=record.endpoint or "", outcome=record.outcome, **ids).inc()
        if record.prompt_tokens:
            self._child("llm_prompt_tokens_total", **ids).inc(record.prompt_tokens)
        if record.completion_tokens:
            self._child("llm_generated_tokens_total", **ids).inc(record.completion_tokens)
        # Latency over what the success rate counts, as /api/metrics does: a client's bad request (400, 404)
        # or a cancelled one says nothing about how fast the service answers.
        timed = is_success(record) or is_failure(record)
        if timed:
            self._child("llm_request_duration_seconds", **ids).observe(record.duration_s)
        if record.ttft_s is not None:
            self._child("llm_time_to_first_token_seconds", **ids).observe(record.ttft_s)
        if record.queue_s is not None:
            self._child("llm_request_queue_time_seconds", **ids).observe(record.queue_s)
        if self.compat:
            self._child("inference_requests_total", status=record.outcome).inc()
            if timed:
                self._child("inference_duration_seconds").observe(record.duration_s)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """(exposition, Content-Type): OpenMetrics when the scraper asks for it, else the 0.0.4 text format."""
        if wants_openmetrics(accept):
            return generate_openmetrics(self.registry), OPENMETRICS_CONTENT_TYPE
        return generate_latest(self.registry), CONTENT_TYPE
