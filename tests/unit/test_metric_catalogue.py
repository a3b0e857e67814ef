"""The metric catalogue: naming rules, the seeds' names, and readings -> (metric, labels, value) triples."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from ollama_server.monitoring import catalogue
from ollama_server.monitoring.catalogue import BASE_UNITS
from ollama_server.monitoring.catalogue import METRICS
from ollama_server.monitoring.catalogue import samples_from
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.health_score import health_score
from ollama_server.monitoring.host import HostSample
from tests.fakes.nvml import GIB
from tests.fakes.nvml import FakeNvml

NAMES = [m.name for m in METRICS]
# promlint's abbreviated and non-base units (monitoring.md §2.3), as name parts.
FORBIDDEN_PARTS = {"ms", "s", "mb", "gb", "kb", "b", "mib", "gib", "percent", "pct", "mhz", "minutes",
                   "milliseconds", "kilobytes", "megabytes", "bits", "celcius", "fahrenheit", "mw", "count"}


def test_names_are_unique():
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("metric", METRICS, ids=NAMES)
def test_each_name_follows_the_prometheus_rules(metric):
    assert re.fullmatch(r"[a-z][a-z0-9_]*", metric.name), "snake_case, no ':' and no capitals"
    assert ":" not in metric.name
    assert metric.type in catalogue.TYPES
    assert metric.name.endswith("_total") == (metric.type == "counter"), "_total on counters only"
    stem = metric.name[:-len("_total")] if metric.type == "counter" else metric.name
    if metric.unit:
        assert metric.unit in BASE_UNITS
        assert stem.endswith("_" + metric.unit), "the unit is the suffix"
    for unit in BASE_UNITS:  # no name claims a unit it does not declare
        if stem.endswith("_" + unit):
            assert metric.unit == unit
    assert not FORBIDDEN_PARTS & set(metric.name.split("_")), "base units only"
    assert not metric.name.endswith(("_bucket", "_sum", "_count")), "reserved histogram suffixes"
    assert metric.description and metric.chart_label
    assert (metric.buckets is not None) == (metric.type == "histogram")
    if metric.buckets:
        assert list(metric.buckets) == sorted(set(metric.buckets))
    assert "le" not in metric.labels and len(metric.labels) == len(set(metric.labels))
    assert not {"request_id", "prompt", "user"} & set(metric.labels), "low cardinality"


@pytest.mark.parametrize("name, type_, labels", [
    ("llm_request_duration_seconds", "histogram", ("api", "model")),
    ("llm_gpu_temperature_celsius", "gauge", ("gpu", "name")),
    ("llm_active_requests", "gauge", ()),
    ("inference_requests_total", "counter", ("status",)),
    ("inference_duration_seconds", "histogram", ()),
    ("gpu_memory_used_bytes", "gauge", ("gpu",)),
    ("gpu_temperature_celsius", "gauge", ("gpu",)),
    ("active_requests", "gauge", ()),
    ("llm_prompt_tokens_total", "counter", ("api", "model")),
    ("llm_generated_tokens_total", "counter", ("api", "model")),
    ("llm_time_to_first_token_seconds", "histogram", ("api", "model")),
    ("llm_queued_requests", "gauge", ()),
    ("llm_health_score", "gauge", ()),
    ("llm_alert_state", "gauge", ("alert", "severity", "state")),
])
def test_the_seeds_names_are_declared_with_their_types_and_labels(name, type_, labels):
    metric = catalogue.metric(name)
    assert (metric.type, metric.labels) == (type_, labels)


def test_the_heartcode_names_are_in_the_compat_block_only():
    compat = {m.name for m in METRICS if m.compat}
    assert compat == {"inference_requests_total", "inference_duration_seconds", "gpu_memory_used_bytes",
                      "gpu_temperature_celsius", "active_requests"}
    assert all(m.name.startswith("llm_") for m in METRICS if not m.compat)


def test_the_seeds_duration_buckets_are_edges():
    assert {0.1, 0.5} <= set(catalogue.metric("llm_request_duration_seconds").buckets)


def triples(samples):
    return {(m.name, tuple(sorted(labels.items()))): value for m, labels, value in samples}


def test_gpu_readings_become_base_unit_samples():
    reader = GpuReader(nvml=FakeNvml("four_detailed"))
    got = triples(samples_from(reader.read(), driver_version="550.54.15", cuda_version="12.4"))
    hot = (("gpu", "0"), ("name", "NVIDIA GeForce RTX 3090"))
    assert got[("llm_gpu_devices", ())] == 4
    assert got[("llm_gpu_driver_info", (("cuda_version", "12.4"), ("driver_version", "550.54.15")))] == 1
    assert got[("llm_gpu_temperature_celsius", hot)] == 83.0
    assert got[("llm_gpu_utilization_ratio", hot)] == pytest.approx(0.97)
    assert got[("llm_gpu_memory_used_bytes", hot)] == 6 * GIB
    assert got[("llm_gpu_power_watts", hot)] == pytest.approx(348.2)
    assert got[("llm_gpu_fan_speed_ratio", hot)] == pytest.approx(0.78)
    assert got[("llm_gpu_clock_memory_hertz", hot)] == 9751e6
    assert got[("llm_gpu_pcie_link_width", hot)] == 16
    assert got[("llm_gpu_throttle_reason_active", hot + (("reason", "sw_power_cap"),))] == 1
    passive = (("gpu", "2"), ("name", "NVIDIA A2"))
    assert ("llm_gpu_fan_speed_ratio", passive) not in got  # NotSupported: absent, not zero
    assert got[("llm_gpu_temperature_celsius", passive)] == 72.0
    assert not any(name.startswith("gpu_") for name, _ in got)  # compat off by default


def test_a_lost_gpu_yields_only_gpu_up_zero():
    reader = GpuReader(nvml=FakeNvml("lost_mid_run"))
    reader.read()
    got = triples(samples_from(reader.read()))
    lost = [key for key in got if ("gpu", "1") in key[1]]
    assert lost == [("llm_gpu_up", (("gpu", "1"), ("name", "NVIDIA GeForce RTX 3090")))] and got[lost[0]] == 0


def test_no_gpu_gives_a_zero_device_count_and_no_gpu_series():
    got = triples(samples_from(GpuReader(nvml=FakeNvml("no_library")).read()))
    assert got == {("llm_gpu_devices", ()): 0}


def test_host_engine_health_and_compat_samples():
    host = HostSample(at=1.0, cpu_percent=25.0, cpu_per_core_percent=(20.0, 30.0), load_average=(1.0, 0.5, 0.25),
                      memory_used_bytes=8 * GIB, memory_total_bytes=32 * GIB, memory_percent=25.0,
                      disk_path="/data", disk_used_bytes=GIB, disk_total_bytes=4 * GIB, disk_percent=25.0,
                      process_rss_bytes=123)
    snapshot = SimpleNamespace(running=3, waiting=2)
    health = health_score(cpu_percent=25.0)
    gpus = GpuReader(nvml=FakeNvml("two_unequal")).read()
    got = triples(samples_from(gpus, host, snapshot, health=health, optimization=85.0, compat=True,
                               alerts=[{"alert": "HighGpuTemp", "severity": "warning", "state": "firing"}]))
    assert got[("llm_host_cpu_usage_ratio", ())] == 0.25
    assert got[("llm_host_cpu_core_usage_ratio", (("core", "1"),))] == 0.3
    assert got[("llm_host_load_average", (("window", "15m"),))] == 0.25
    assert got[("llm_host_disk_usage_ratio", (("path", "/data"),))] == 0.25
    assert got[("llm_process_resident_memory_bytes", ())] == 123
    assert ("llm_host_swap_used_bytes", ()) not in got  # unknown -> absent
    assert got[("llm_active_requests", ())] == 3 and got[("llm_queued_requests", ())] == 2
    assert got[("active_requests", ())] == 3 and got[("gpu_temperature_celsius", (("gpu", "0"),))] == 61.0
    assert got[("llm_health_score", ())] == 75.0
    assert got[("llm_health_component_score", (("component", "cpu"),))] == 75.0
    assert got[("llm_optimization_score", ())] == 85.0
    assert got[("llm_alerts_active", (("severity", "warning"),))] == 1
    assert got[("llm_alert_state", (("alert", "HighGpuTemp"), ("severity", "warning"), ("state", "firing")))] == 1


def test_every_sample_uses_a_declared_metric_with_its_declared_labels():
    host = HostSample(at=1.0, cpu_percent=1.0, disk_path="/", disk_percent=1.0)
    for sample in samples_from(GpuReader(nvml=FakeNvml("four_detailed")).read(), host,
                               SimpleNamespace(running=0, waiting=0), compat=True):
        metric, labels, value = sample
        assert catalogue.BY_NAME[metric.name] is metric
        assert tuple(labels) == metric.labels and all(isinstance(v, str) for v in labels.values())
        assert isinstance(value, float)
