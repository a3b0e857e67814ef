"""The Monitor's collection: fake-NVML scenarios, request records, the health score, the store, and alerts."""
from __future__ import annotations

import sqlite3

from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import FakeNvml


def monitor_of(app):
    return app.extensions[EXTENSION_KEY].monitor


def values(collection, name: str) -> dict:
    return {labels: s.value for s in collection.samples if s.metric.name == name for labels in [dict(s.labels)
            .get("gpu", "")]}


def test_it_reads_four_gpus_each_with_its_own_values(make_app):
    collection = monitor_of(make_app(nvml=FakeNvml("four_detailed"))).collect_once()
    assert collection.gpu_available and len(collection.gpus) == 4
    temperatures = values(collection, "llm_gpu_temperature_celsius")
    assert len(temperatures) == 4 and len(set(temperatures.values())) == 4
    assert collection.driver_version and collection.cuda_version


def test_a_not_supported_field_is_absent_not_zero(make_app):
    collection = monitor_of(make_app(nvml=FakeNvml("four_detailed"))).collect_once()
    fans = values(collection, "llm_gpu_fan_speed_ratio")
    passive = [g.index for g in collection.gpus if g.fan_speed_percent is None]
    assert passive and all(str(index) not in fans for index in passive)
    assert len(fans) == 4 - len(passive)


def test_a_gpu_lost_mid_run_is_marked_lost_and_collection_goes_on(make_app):
    monitor = monitor_of(make_app(nvml=FakeNvml("lost_mid_run")))
    first = monitor.collect_once()
    assert not any(g.lost for g in first.gpus)
    second = monitor.collect_once()
    lost = [g for g in second.gpus if g.lost]
    assert len(lost) == 1 and lost[0].name  # it keeps the name of its last good read
    assert values(second, "llm_gpu_up")[str(lost[0].index)] == 0


def test_without_nvml_there_is_no_gpu_and_the_rest_is_collected(make_app):
    collection = monitor_of(make_app(nvml=FakeNvml("no_library"))).collect_once()
    assert collection.gpus == () and not collection.gpu_available and collection.gpu_reason
    assert collection.host.memory_total_bytes and collection.health.score is not None


def test_request_records_reach_the_aggregates_and_the_health_inputs(make_app, fake_backend):
    app = make_app(nvml=FakeNvml("no_library"))
    engine = app.extensions[EXTENSION_KEY].engine
    fake_backend.enqueue("hi")
    generation = engine.submit(GenerateRequest(model="tiny", prompt="x", dialect="openai",
                                               endpoint="/v1/completions"))
    collect(generation.model, generation)
    generation.wait_finished(10)
    collection = monitor_of(app).collect_once()
    (agg,) = collection.aggregates
    assert (agg.dialect, agg.endpoint, agg.count, agg.successful) == ("openai", "/v1/completions", 1, 1)
    assert collection.error_rate_percent == 0.0 and collection.response_time_ms is not None
    assert {c.name for c in collection.health.components} >= {"cpu", "memory", "errors", "response"}


def test_samples_are_written_to_the_store(make_app):
    monitor = monitor_of(make_app(nvml=FakeNvml("four_detailed")))
    collection = monitor.collect_once()
    assert collection.store_status["state"] == "ok"
    assert monitor.store.latest("llm_gpu_temperature_celsius", {"gpu": "0", "name": collection.gpus[0].name})


def test_a_locked_store_skips_the_write_and_says_so(make_app, tmp_path):
    monitor = monitor_of(make_app(nvml=FakeNvml("no_library"), metrics_busy_timeout=0.05))
    monitor.collect_once()  # creates the database
    blocker = sqlite3.connect(monitor.store.path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        collection = monitor.collect_once()
        assert collection.store_status["state"] == "locked"
        assert collection.health.score is not None  # the collection itself still happened
    finally:
        blocker.rollback()
        blocker.close()
    assert monitor.collect_once().store_status["state"] == "ok"


def test_a_sustained_breach_fires_once_through_the_monitor(make_app, tmp_path):
    rules = tmp_path / "alerts.yaml"
    rules.write_text("alerts:\n  hot:\n    metric: gpu_temperature\n    warning: 1\n    duration: 10\n")
    app = make_app(nvml=FakeNvml("four_detailed"), alert_rules_file=str(rules))
    monitor = monitor_of(app)
    now = [1000.0]
    monitor.clock = lambda: now[0]
    seen = []
    monitor.on_transitions = seen.extend
    monitor.collect_once()
    now[0] += 5
    monitor.collect_once()
    assert seen == []  # pending, shorter than the duration
    now[0] += 6
    collection = monitor.collect_once()
    assert {t.new for t in seen} == {"firing"} and len(seen) == 4  # one per GPU
    assert len(collection.firing) == 4
