"""The Prometheus exporter: families from the catalogue, request records -> histograms/counters, gauges from
the last collection only, no `_created`, the content types, and the open/keyed /metrics route."""
from __future__ import annotations

import math
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from ollama_server.engine.records import RequestRecord
from ollama_server.monitoring import catalogue
from ollama_server.monitoring.exporter import CONTENT_TYPE
from ollama_server.monitoring.exporter import OVERFLOW
from ollama_server.monitoring.exporter import Exporter
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import FakeNvml

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends


def record(seq=1, dialect="openai", endpoint="/v1/chat/completions", model="phi4:latest", outcome="done",
           duration_s=0.3, ttft_s=0.07, queue_s=0.02, prompt_tokens=11, completion_tokens=5, http_status=None):
    return RequestRecord(seq=seq, request_id=f"r{seq}", dialect=dialect, endpoint=endpoint, model=model,
                         outcome=outcome, error_kind=None if outcome == "done" else "x", finish_reason=None,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cached_tokens=0,
                         queue_s=queue_s, ttft_s=ttft_s, duration_s=duration_s, finished_at=1000.0 + seq,
                         http_status=http_status)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def values(family) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def text_of(exporter: Exporter, accept: str = "") -> str:
    body, _ = exporter.render(accept)
    return body.decode("utf-8")


def fake_collection(nvml_scenario="four_detailed"):
    """A real Collection's samples from the catalogue (fake NVML), with health, an alert and one aggregate."""
    from ollama_server.monitoring.gpu import GpuReader
    from ollama_server.monitoring.health_score import health_score
    from ollama_server.monitoring.host import HostReader

    reader = GpuReader(nvml=FakeNvml(nvml_scenario))
    gpus = reader.read()
    host = HostReader().read()
    snapshot = SimpleNamespace(running=2, waiting=1)
    samples = catalogue.samples_from(gpus, host, snapshot, driver_version=reader.driver_version,
                                     cuda_version=reader.cuda_version, health=health_score(10, 20, 50, 0, 100),
                                     optimization=80.0, compat=True,
                                     alerts=[{"alert": "gpu_temperature", "severity": "warning", "state": "firing"}])
    aggregate = SimpleNamespace(dialect="openai", endpoint="/v1/chat/completions", model="phi4:latest",
                                completion_tokens=100, tokens_per_second=25.0)
    return SimpleNamespace(samples=tuple(samples), aggregates=(aggregate,))


@pytest.fixture
def exporter():
    collection = fake_collection()
    exp = Exporter(lambda: collection)
    exp.observe([record(1), record(2, duration_s=1.7, ttft_s=0.6),
                 record(3, dialect="ollama", endpoint="/api/chat", model="gemma3:270m", outcome="failed",
                        duration_s=0.05, ttft_s=None, completion_tokens=0),
                 record(4, dialect="plain", endpoint="/nope", model="", outcome="rejected", duration_s=0.001,
                        ttft_s=None, queue_s=None, prompt_tokens=0, completion_tokens=0, http_status=404)])
    return exp


def test_every_exposed_family_is_declared_with_its_type_help_and_labels(exporter):
    parsed = families(text_of(exporter))
    for name, family in parsed.items():
        declared = catalogue.metric(name if family.type != "counter" else name + "_total")
        assert family.type == declared.type and family.documentation == declared.description
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(declared.labels), sample
    expected = {m.name.removesuffix("_total") if m.type == "counter" else m.name for m in catalogue.METRICS}
    assert set(parsed) <= expected
    # Everything a four-GPU collection and these records produce is there.
    assert {"llm_request_duration_seconds", "llm_gpu_temperature_celsius", "llm_active_requests",
            "inference_requests", "inference_duration_seconds", "gpu_memory_used_bytes", "gpu_temperature_celsius",
            "active_requests", "llm_prompt_tokens", "llm_generated_tokens", "llm_time_to_first_token_seconds",
            "llm_request_queue_time_seconds", "llm_queued_requests", "llm_health_score", "llm_alert_state",
            "llm_alerts_active", "llm_generation_tokens_per_second"} <= set(parsed)


def test_the_seeds_samples_look_like_the_seeds(exporter):
    text = text_of(exporter)
    assert "# TYPE llm_request_duration_seconds histogram" in text
    assert 'llm_request_duration_seconds_bucket{api="openai",le="0.5",model="phi4:latest"} 1.0' in text
    assert '# TYPE llm_gpu_temperature_celsius gauge' in text
    assert 'llm_gpu_temperature_celsius{gpu="0",name="' in text
    assert "llm_active_requests 2.0" in text and "llm_queued_requests 1.0" in text
    assert 'inference_requests_total{status="done"} 2.0' in text


def test_records_reach_the_counters_and_histograms(exporter):
    parsed = families(text_of(exporter))
    requests = values(parsed["llm_requests"])
    ids = lambda **kw: ("llm_requests_total", tuple(sorted(kw.items())))  # noqa: E731
    assert requests[ids(api="openai", endpoint="/v1/chat/completions", model="phi4:latest", outcome="done")] == 2
    assert requests[ids(api="ollama", endpoint="/api/chat", model="gemma3:270m", outcome="failed")] == 1
    assert requests[ids(api="plain", endpoint="/nope", model="", outcome="rejected")] == 1
    assert values(parsed["llm_prompt_tokens"])[("llm_prompt_tokens_total",
                                                (("api", "openai"), ("model", "phi4:latest")))] == 22
    assert values(parsed["llm_generated_tokens"])[("llm_generated_tokens_total",
                                                   (("api", "openai"), ("model", "phi4:latest")))] == 10
    duration = values(parsed["llm_request_duration_seconds"])
    openai = (("api", "openai"), ("model", "phi4:latest"))
    assert duration[("llm_request_duration_seconds_count", openai)] == 2
    assert duration[("llm_request_duration_seconds_sum", openai)] == pytest.approx(2.0)
    # a client's 404 is counted but never timed (as /api/metrics does)
    assert ("llm_request_duration_seconds_count", (("api", "plain"), ("model", ""))) not in duration
    ttft = values(parsed["llm_time_to_first_token_seconds"])
    assert ttft[("llm_time_to_first_token_seconds_count", openai)] == 2
    compat = values(parsed["inference_duration_seconds"])
    assert compat[("inference_duration_seconds_count", ())] == 3  # done, done, failed
    statuses = values(parsed["inference_requests"])
    assert statuses[("inference_requests_total", (("status", "rejected"),))] == 1


@pytest.mark.parametrize("name", ["llm_request_duration_seconds", "llm_time_to_first_token_seconds",
                                  "llm_request_queue_time_seconds", "inference_duration_seconds"])
def test_histograms_use_the_catalogue_buckets_monotonic_with_inf_equal_to_count(exporter, name):
    family = families(text_of(exporter))[name]
    series: dict = {}
    for sample in family.samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        series.setdefault(key, {"buckets": [], "count": None})
        if sample.name.endswith("_bucket"):
            series[key]["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            series[key]["count"] = sample.value
    assert series
    for data in series.values():
        edges = [edge for edge, _ in data["buckets"]]
        assert edges == list(catalogue.metric(name).buckets) + [math.inf]
        counts = [count for _, count in data["buckets"]]
        assert counts == sorted(counts) and counts[-1] == data["count"]


def test_no_created_series_in_either_format(exporter):
    assert "_created" not in text_of(exporter)
    assert "_created" not in text_of(exporter, PROMETHEUS_ACCEPT)


def test_content_types(exporter):
    assert exporter.render()[1] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    assert exporter.render("*/*")[1] == CONTENT_TYPE
    assert exporter.render("text/plain;version=1.0.0")[1] == CONTENT_TYPE  # we speak 0.0.4 text only
    body, content_type = exporter.render(PROMETHEUS_ACCEPT)
    assert content_type == OPENMETRICS
    assert body.endswith(b"# EOF\n")
    parsed = {f.name for f in parse_openmetrics(body.decode())}
    assert {"llm_requests", "llm_request_duration_seconds", "llm_gpu_temperature_celsius"} <= parsed


def test_the_text_format_parses_without_duplicates_and_ends_with_a_newline(exporter):
    text = text_of(exporter)
    assert text.endswith("\n")
    seen = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)


def test_label_values_are_escaped():
    disk = catalogue.metric("llm_host_disk_used_bytes")
    odd = 'a"b\\c\nd'
    collection = SimpleNamespace(samples=(catalogue.Sample(disk, (("path", odd),), 5.0),), aggregates=())
    text = text_of(Exporter(lambda: collection))
    assert r'llm_host_disk_used_bytes{path="a\"b\\c\nd"} 5.0' in text
    (sample,) = families(text)["llm_host_disk_used_bytes"].samples
    assert sample.labels["path"] == odd


def test_before_any_collection_the_gauges_are_absent_and_the_request_families_there():
    exp = Exporter(lambda: None)
    parsed = families(text_of(exp))
    assert {"llm_request_duration_seconds", "llm_requests", "inference_requests"} <= set(parsed)
    assert not [name for name in parsed if catalogue.metric(
        name + "_total" if parsed[name].type == "counter" else name).type == "gauge"]


def test_a_broken_collection_leaves_the_request_families_and_never_raises():
    def broken():
        raise RuntimeError("boom")
    exp = Exporter(broken)
    exp.observe([record(1)])
    assert "llm_requests_total{" in text_of(exp)
    odd = SimpleNamespace(samples=None, aggregates=())  # not iterable
    assert "llm_requests_total" in text_of(Exporter(lambda: odd))


def test_each_exporter_has_its_own_registry_never_the_global_one():
    first, second = Exporter(), Exporter()
    first.observe([record(1)])
    assert "llm_requests_total{" in text_of(first) and "llm_requests_total{" not in text_of(second)
    assert REGISTRY.get_sample_value("llm_requests_total", {"api": "openai", "endpoint": "/v1/chat/completions",
                                                            "model": "phi4:latest", "outcome": "done"}) is None


def test_client_chosen_label_values_are_capped():
    exp = Exporter(label_limits={"model": 2, "endpoint": 2})
    exp.observe([record(i, model=f"m{i}", endpoint=f"/scan/{i}", outcome="rejected", http_status=404)
                 for i in range(1, 6)])
    requests = families(text_of(exp))["llm_requests"]
    assert {s.labels["model"] for s in requests.samples} == {"m1", "m2", OVERFLOW}
    assert {s.labels["endpoint"] for s in requests.samples} == {"/scan/1", "/scan/2", OVERFLOW}
    assert len(requests.samples) == 3


def test_without_compat_the_heartcode_request_families_are_absent():
    exp = Exporter(compat=False)
    exp.observe([record(1)])
    parsed = families(text_of(exp))
    assert "inference_requests" not in parsed and "inference_duration_seconds" not in parsed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_accepts_a_four_gpu_exposition(exporter):
    result = subprocess.run(["promtool", "check", "metrics"], input=exporter.render()[0], capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


# --- the route -------------------------------------------------------------------------------------------


def test_the_route_serves_the_app_exporter_fed_by_the_monitor(make_app, fake_backend):
    from ollama_server.engine.types import GenerateRequest
    from ollama_server.engine.types import collect

    app = make_app(nvml=FakeNvml("four_detailed"))
    client = app.test_client()
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["Content-Type"] == CONTENT_TYPE
    assert "llm_gpu_temperature_celsius" not in before.get_data(as_text=True)  # no collection yet
    services = app.extensions[EXTENSION_KEY]
    assert services.exporter.observe in services.monitor.record_listeners
    fake_backend.enqueue("hi")
    generation = services.engine.submit(GenerateRequest(model="tiny", prompt="x", dialect="openai",
                                                        endpoint="/v1/completions"))
    collect(generation.model, generation)
    generation.wait_finished(10)
    services.monitor.collect_once()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'llm_requests_total{api="openai",endpoint="/v1/completions",model="tiny:latest",outcome="done"} 1.0' \
        in text
    assert 'llm_gpu_temperature_celsius{gpu="3"' in text and "llm_health_score " in text
    assert client.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT}).headers["Content-Type"] == OPENMETRICS
    assert client.head("/metrics").status_code == 200


def test_a_scrape_never_touches_nvml_the_engine_or_the_store(make_app):
    app = make_app(nvml=FakeNvml("four_detailed"))
    services = app.extensions[EXTENSION_KEY]
    services.monitor.collect_once()

    def forbidden(*args, **kwargs):
        raise AssertionError("a scrape read a live source")
    services.monitor.gpu.read = forbidden
    services.monitor.host.read = forbidden
    services.monitor.store.insert = forbidden
    services.monitor.store.status = forbidden
    services.engine.snapshot = forbidden
    services.engine.records.since = forbidden
    response = app.test_client().get("/metrics")
    assert response.status_code == 200 and b"llm_gpu_temperature_celsius" in response.data


def test_open_by_default_even_with_an_api_key(make_app):
    client = make_app(api_key="sekret").test_client()
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/models").status_code == 401  # the key still guards the rest


def test_keyed_when_metrics_require_key(make_app):
    client = make_app(api_key="sekret", metrics_require_key=True).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics?api_key=sekret").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "sekret"}).status_code == 200
    response = client.get("/metrics", headers={"Authorization": "Bearer sekret"})
    assert response.status_code == 200 and response.headers["Content-Type"] == CONTENT_TYPE


def test_metrics_require_key_without_a_key_stays_open(make_app):
    assert make_app(metrics_require_key=True).test_client().get("/metrics").status_code == 200
