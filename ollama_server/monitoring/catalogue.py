"""Every metric declared once (name, unit, description, chart label, type, labels), and readings -> samples."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Optional
from typing import Sequence

# Units a name must end with (before `_total`); "" is a plain count (requests, tokens, lanes).
BASE_UNITS = ("celsius", "bytes", "ratio", "watts", "seconds", "hertz", "joules")
TYPES = ("gauge", "counter", "histogram")
# Classic buckets are fixed up front; the seed shows 0.1 and 0.5, so both are edges here.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class Metric:
    """One metric family; `compat` names the dashboard it imitates (emitted only when opted in)."""

    name: str
    type: str
    unit: str
    description: str
    chart_label: str
    labels: tuple[str, ...] = ()
    group: str = ""
    buckets: Optional[tuple[float, ...]] = None
    compat: str = ""


@dataclass(frozen=True)
class Sample:
    """One (metric, labels, value) reading, ready for an exposition or a chart."""

    metric: Metric
    labels: tuple[tuple[str, str], ...]
    value: float

    def __iter__(self):  # unpacks as the (metric, labels, value) triple
        return iter((self.metric, dict(self.labels), self.value))


def _m(name: str, type_: str, unit: str, description: str, chart_label: str, labels: Sequence[str] = (),
       group: str = "", **extra: Any) -> Metric:
    return Metric(name, type_, unit, description, chart_label, tuple(labels), group, **extra)


GPU = ("gpu", "name")  # the seed's labels: index as a string, and the model name
WINDOW = ("api", "endpoint", "model")
METRICS: tuple[Metric, ...] = (
    # --- GPU (GpuReader) ----------------------------------------------------------------------
    _m("llm_gpu_devices", "gauge", "", "GPUs NVML reports (0 without a library or driver)", "GPUs", (), "gpu"),
    _m("llm_gpu_up", "gauge", "", "1 while the GPU answers, 0 once it is lost", "GPU up", GPU, "gpu"),
    _m("llm_gpu_driver_info", "gauge", "", "Always 1; the NVIDIA driver and CUDA versions as labels",
       "Driver", ("driver_version", "cuda_version"), "gpu"),
    _m("llm_gpu_temperature_celsius", "gauge", "celsius", "GPU temperature", "Temperature (°C)", GPU, "gpu"),
    _m("llm_gpu_utilization_ratio", "gauge", "ratio", "Share of time the GPU was computing", "GPU utilization",
       GPU, "gpu"),
    _m("llm_gpu_memory_utilization_ratio", "gauge", "ratio", "Share of time GPU memory was read or written",
       "Memory bus utilization", GPU, "gpu"),
    _m("llm_gpu_memory_used_bytes", "gauge", "bytes", "GPU memory in use", "VRAM used", GPU, "gpu"),
    _m("llm_gpu_memory_total_bytes", "gauge", "bytes", "GPU memory installed", "VRAM total", GPU, "gpu"),
    _m("llm_gpu_memory_free_bytes", "gauge", "bytes", "GPU memory free", "VRAM free", GPU, "gpu"),
    _m("llm_gpu_power_watts", "gauge", "watts", "GPU power draw", "Power (W)", GPU, "gpu"),
    _m("llm_gpu_power_limit_watts", "gauge", "watts", "GPU software power limit", "Power limit (W)", GPU, "gpu"),
    _m("llm_gpu_fan_speed_ratio", "gauge", "ratio", "Fan speed as a share of its maximum", "Fan", GPU, "gpu"),
    _m("llm_gpu_clock_graphics_hertz", "gauge", "hertz", "Graphics clock", "Graphics clock", GPU, "gpu"),
    _m("llm_gpu_clock_sm_hertz", "gauge", "hertz", "Streaming multiprocessor clock", "SM clock", GPU, "gpu"),
    _m("llm_gpu_clock_memory_hertz", "gauge", "hertz", "Memory clock", "Memory clock", GPU, "gpu"),
    _m("llm_gpu_throttle_reason_active", "gauge", "", "1 for each clock event (throttle) reason now active",
       "Throttle reasons", GPU + ("reason",), "gpu"),
    _m("llm_gpu_pcie_link_generation", "gauge", "", "Current PCIe link generation (idle GPUs downshift)",
       "PCIe gen", GPU, "gpu"),
    _m("llm_gpu_pcie_link_width", "gauge", "", "Current PCIe link width in lanes", "PCIe lanes", GPU, "gpu"),
    # --- host (HostReader) ------------------------------------------------------------------------
    _m("llm_host_cpu_usage_ratio", "gauge", "ratio", "CPU busy share, all cores", "CPU", (), "host"),
    _m("llm_host_cpu_core_usage_ratio", "gauge", "ratio", "CPU busy share per core", "CPU per core", ("core",),
       "host"),
    _m("llm_host_load_average", "gauge", "", "Run-queue load average", "Load", ("window",), "host"),
    _m("llm_host_memory_used_bytes", "gauge", "bytes", "RAM in use", "RAM used", (), "host"),
    _m("llm_host_memory_total_bytes", "gauge", "bytes", "RAM installed", "RAM total", (), "host"),
    _m("llm_host_memory_usage_ratio", "gauge", "ratio", "RAM in use as a share", "RAM", (), "host"),
    _m("llm_host_swap_used_bytes", "gauge", "bytes", "Swap in use", "Swap used", (), "host"),
    _m("llm_host_swap_total_bytes", "gauge", "bytes", "Swap configured", "Swap total", (), "host"),
    _m("llm_host_disk_used_bytes", "gauge", "bytes", "Disk used where the data dir lives", "Disk used",
       ("path",), "host"),
    _m("llm_host_disk_total_bytes", "gauge", "bytes", "Disk size where the data dir lives", "Disk total",
       ("path",), "host"),
    _m("llm_host_disk_usage_ratio", "gauge", "ratio", "Disk used as a share", "Disk", ("path",), "host"),
    _m("llm_process_resident_memory_bytes", "gauge", "bytes", "This process's resident memory", "RSS", (),
       "host"),
    _m("llm_process_threads", "gauge", "", "This process's threads", "Threads", (), "host"),
    _m("llm_process_open_fds", "gauge", "", "This process's open file descriptors", "Open files", (), "host"),
    _m("llm_process_uptime_seconds", "gauge", "seconds", "Time since this process started", "Uptime", (),
       "host"),
    # --- requests (RequestLog, EngineSnapshot) ------------------------------------------------------
    _m("llm_request_duration_seconds", "histogram", "seconds", "Request duration", "Latency (s)",
       ("api", "model"), "requests", buckets=DURATION_BUCKETS),
    _m("llm_time_to_first_token_seconds", "histogram", "seconds", "Submit to first token, queueing included",
       "TTFT (s)", ("api", "model"), "requests", buckets=TTFT_BUCKETS),
    _m("llm_request_queue_time_seconds", "histogram", "seconds", "Time a request waited for the engine",
       "Queue time (s)", ("api", "model"), "requests", buckets=QUEUE_BUCKETS),
    _m("llm_requests_total", "counter", "", "Finished requests by outcome (done, failed, cancelled, rejected)",
       "Requests", ("api", "endpoint", "model", "outcome"), "requests"),
    _m("llm_prompt_tokens_total", "counter", "", "Prompt tokens processed", "Prompt tokens", ("api", "model"),
       "requests"),
    _m("llm_generated_tokens_total", "counter", "", "Tokens generated", "Generated tokens", ("api", "model"),
       "requests"),
    _m("llm_generation_tokens_per_second", "gauge", "", "Generated tokens per second over the last window",
       "Tokens/s", ("api", "model"), "requests"),
    _m("llm_active_requests", "gauge", "", "Number of active requests", "Active requests", (), "requests"),
    _m("llm_queued_requests", "gauge", "", "Requests waiting for the engine (queue depth)", "Queue depth", (),
       "requests"),
    # --- the collector's sliding window per endpoint (stored every collection: the dashboard's charts) ------
    _m("llm_window_requests", "gauge", "", "Requests finished (succeeded or failed) in the collector's window",
       "Requests in window", WINDOW, "requests"),
    _m("llm_window_success_ratio", "gauge", "ratio", "Share of the window's finished requests that succeeded",
       "Success rate", WINDOW, "requests"),
    _m("llm_window_latency_p50_seconds", "gauge", "seconds", "Median request duration in the window",
       "Latency p50 (s)", WINDOW, "requests"),
    _m("llm_window_latency_p95_seconds", "gauge", "seconds", "95th percentile request duration in the window",
       "Latency p95 (s)", WINDOW, "requests"),
    _m("llm_window_latency_p99_seconds", "gauge", "seconds", "99th percentile request duration in the window",
       "Latency p99 (s)", WINDOW, "requests"),
    _m("llm_window_ttft_p50_seconds", "gauge", "seconds", "Median time to first token in the window",
       "TTFT p50 (s)", WINDOW, "requests"),
    _m("llm_window_generated_tokens", "gauge", "", "Tokens generated by the window's requests",
       "Generated tokens in window", WINDOW, "requests"),
    _m("llm_window_decode_tokens_per_second", "gauge", "", "Decode speed in the window: tokens after the first "
       "over the time after the first token", "Decode tokens/s", WINDOW, "requests"),
    # --- health and alerts ----------------------------------------------------------------------------
    _m("llm_health_score", "gauge", "", "Heuristic system health score, 0-100 points", "Health score", (),
       "health"),
    _m("llm_health_component_score", "gauge", "", "One component of the health score, 0-100 points",
       "Health components", ("component",), "health"),
    _m("llm_optimization_score", "gauge", "", "Heuristic hardware optimization score, 0-100 points",
       "Optimization score", (), "health"),
    _m("llm_alerts_active", "gauge", "", "Alerts pending or firing, by severity", "Active alerts",
       ("severity",), "health"),
    _m("llm_alert_state", "gauge", "", "1 for an alert's current state (pending or firing)", "Alert state",
       ("alert", "severity", "state"), "health"),
    # --- the HeartCode seed's unprefixed names (opt-in compatibility block) ---------------------------
    _m("inference_requests_total", "counter", "", "Request count, by status", "Requests", ("status",),
       "requests", compat="heartcode"),
    _m("inference_duration_seconds", "histogram", "seconds", "Latency histogram", "Latency (s)", (),
       "requests", buckets=DURATION_BUCKETS, compat="heartcode"),
    _m("gpu_memory_used_bytes", "gauge", "bytes", "VRAM in use", "VRAM used", ("gpu",), "gpu",
       compat="heartcode"),
    _m("gpu_temperature_celsius", "gauge", "celsius", "GPU temperature", "Temperature (°C)", ("gpu",), "gpu",
       compat="heartcode"),
    _m("active_requests", "gauge", "", "Requests in flight", "Active requests", (), "requests",
       compat="heartcode"),
)
BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}


def metric(name: str) -> Metric:
    """The declaration for `name` (KeyError names it when it is not declared)."""
    return BY_NAME[name]


def _sample(metric_name: str, value: Any, /, **labels: Any) -> Optional[Sample]:
    # Positional-only: "name" is a label (the GPU's model name), not this parameter.
    if value is None:  # NotSupported/unknown: the series is absent, never a fake zero
        return None
    declared = BY_NAME[metric_name]
    assert set(labels) == set(declared.labels), (metric_name, sorted(labels))
    return Sample(declared, tuple((key, str(labels[key])) for key in declared.labels), float(value))


def _ratio(percent: Optional[float]) -> Optional[float]:
    return None if percent is None else percent / 100.0


def _hz(mhz: Optional[int]) -> Optional[float]:
    return None if mhz is None else mhz * 1_000_000.0


def gpu_samples_from(gpus: Iterable[Any], driver_version: Optional[str] = None,
                     cuda_version: Optional[str] = None, compat: bool = False) -> list[Sample]:
    """GpuSamples -> samples: percent -> ratio, MHz -> Hz; a lost GPU yields only `llm_gpu_up 0`."""
    gpus = list(gpus)
    out = [_sample("llm_gpu_devices", len(gpus))]
    if driver_version or cuda_version:
        out.append(_sample("llm_gpu_driver_info", 1, driver_version=driver_version or "",
                           cuda_version=cuda_version or ""))
    for g in gpus:
        ids = {"gpu": g.index, "name": g.name or ""}
        out.append(_sample("llm_gpu_up", 0 if g.lost else 1, **ids))
        if g.lost:
            continue
        out += [_sample("llm_gpu_temperature_celsius", g.temperature_celsius, **ids),
                _sample("llm_gpu_utilization_ratio", _ratio(g.utilization_percent), **ids),
                _sample("llm_gpu_memory_utilization_ratio", _ratio(g.memory_utilization_percent), **ids),
                _sample("llm_gpu_memory_used_bytes", g.memory_used_bytes, **ids),
                _sample("llm_gpu_memory_total_bytes", g.memory_total_bytes, **ids),
                _sample("llm_gpu_memory_free_bytes", g.memory_free_bytes, **ids),
                _sample("llm_gpu_power_watts", g.power_watts, **ids),
                _sample("llm_gpu_power_limit_watts", g.power_limit_watts, **ids),
                _sample("llm_gpu_fan_speed_ratio", _ratio(g.fan_speed_percent), **ids),
                _sample("llm_gpu_clock_graphics_hertz", _hz(g.clock_graphics_mhz), **ids),
                _sample("llm_gpu_clock_sm_hertz", _hz(g.clock_sm_mhz), **ids),
                _sample("llm_gpu_clock_memory_hertz", _hz(g.clock_memory_mhz), **ids),
                _sample("llm_gpu_pcie_link_generation", g.pcie_generation, **ids),
                _sample("llm_gpu_pcie_link_width", g.pcie_width, **ids)]
        out += [_sample("llm_gpu_throttle_reason_active", 1, reason=reason, **ids)
                for reason in g.throttle_reasons or ()]
        if compat:
            out += [_sample("gpu_memory_used_bytes", g.memory_used_bytes, gpu=g.index),
                    _sample("gpu_temperature_celsius", g.temperature_celsius, gpu=g.index)]
    return [s for s in out if s is not None]


def host_samples_from(host: Any) -> list[Sample]:
    """A HostSample -> samples (percent -> ratio)."""
    if host is None:
        return []
    out = [_sample("llm_host_cpu_usage_ratio", _ratio(host.cpu_percent)),
           _sample("llm_host_memory_used_bytes", host.memory_used_bytes),
           _sample("llm_host_memory_total_bytes", host.memory_total_bytes),
           _sample("llm_host_memory_usage_ratio", _ratio(host.memory_percent)),
           _sample("llm_host_swap_used_bytes", host.swap_used_bytes),
           _sample("llm_host_swap_total_bytes", host.swap_total_bytes),
           _sample("llm_process_resident_memory_bytes", host.process_rss_bytes),
           _sample("llm_process_threads", host.process_threads),
           _sample("llm_process_open_fds", host.process_open_fds),
           _sample("llm_process_uptime_seconds", host.process_uptime_seconds)]
    out += [_sample("llm_host_cpu_core_usage_ratio", _ratio(v), core=i)
            for i, v in enumerate(host.cpu_per_core_percent or ())]
    out += [_sample("llm_host_load_average", v, window=w)
            for w, v in zip(("1m", "5m", "15m"), host.load_average or ())]
    if host.disk_path is not None:
        out += [_sample("llm_host_disk_used_bytes", host.disk_used_bytes, path=host.disk_path),
                _sample("llm_host_disk_total_bytes", host.disk_total_bytes, path=host.disk_path),
                _sample("llm_host_disk_usage_ratio", _ratio(host.disk_percent), path=host.disk_path)]
    return [s for s in out if s is not None]


def engine_samples_from(snapshot: Any, compat: bool = False) -> list[Sample]:
    """An EngineSnapshot -> active requests and queue depth."""
    out = [_sample("llm_active_requests", snapshot.running), _sample("llm_queued_requests", snapshot.waiting)]
    if compat:
        out.append(_sample("active_requests", snapshot.running))
    return [s for s in out if s is not None]


def health_samples_from(health: Any = None, optimization: Optional[float] = None,
                        alerts: Iterable[Mapping[str, str]] = ()) -> list[Sample]:
    """A HealthScore (health_score.py), an optimization score and alerts ({alert, severity, state})."""
    out: list[Optional[Sample]] = []
    if health is not None:
        out.append(_sample("llm_health_score", health.score))
        out += [_sample("llm_health_component_score", c.score, component=c.name) for c in health.components]
    out.append(_sample("llm_optimization_score", optimization))
    counts: dict[str, int] = {}
    for alert in alerts:
        out.append(_sample("llm_alert_state", 1, alert=alert["alert"], severity=alert["severity"],
                           state=alert["state"]))
        counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
    out += [_sample("llm_alerts_active", n, severity=sev) for sev, n in sorted(counts.items())]
    return [s for s in out if s is not None]


def samples_from(gpu_samples: Iterable[Any] = (), host_sample: Any = None, snapshot: Any = None, *,
                 driver_version: Optional[str] = None, cuda_version: Optional[str] = None, health: Any = None,
                 optimization: Optional[float] = None, alerts: Iterable[Mapping[str, str]] = (),
                 compat: bool = False) -> list[Sample]:
    """Every reading at one moment -> samples; request histograms/counters need state and live elsewhere."""
    out = gpu_samples_from(gpu_samples, driver_version, cuda_version, compat) + host_samples_from(host_sample)
    if snapshot is not None:
        out += engine_samples_from(snapshot, compat)
    return out + health_samples_from(health, optimization, alerts)


def window_samples_from(aggregates: Iterable[Any]) -> list[Sample]:
    """The collector's window aggregates (requests_agg.Aggregate) -> per-endpoint gauges for the charts."""
    out: list[Optional[Sample]] = []
    for a in aggregates:
        judged = a.successful + a.failed
        if not judged and not a.completion_tokens:
            continue  # only cancelled/rejected requests: nothing to chart, and no empty series per probe
        ids = {"api": a.dialect, "endpoint": a.endpoint, "model": a.model}
        out += [_sample("llm_window_requests", judged, **ids),
                _sample("llm_window_success_ratio", a.success_ratio, **ids),
                _sample("llm_window_latency_p50_seconds", a.latency_p50_s, **ids),
                _sample("llm_window_latency_p95_seconds", a.latency_p95_s, **ids),
                _sample("llm_window_latency_p99_seconds", a.latency_p99_s, **ids),
                _sample("llm_window_ttft_p50_seconds", a.ttft_p50_s, **ids),
                _sample("llm_window_generated_tokens", a.completion_tokens, **ids),
                _sample("llm_window_decode_tokens_per_second", a.decode_tokens_per_second, **ids)]
    return [s for s in out if s is not None]
