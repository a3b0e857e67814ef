"""The JSON monitoring APIs over fake NVML scenarios, through the real Flask test client: /api/metrics/*,
the 3090 seed's /gpu and /system, /api/alerts, /health's metrics component and /api/ps size_vram."""
from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from ollama_server import create_app
from ollama_server.services import EXTENSION_KEY
from ollama_server.settings import build_settings
from tests.fakes.nvml import FakeNvml
from tests.fakes.tiny_gguf import write_header_model


def svc(app):
    return app.extensions[EXTENSION_KEY]


def collected(make_app, scenario: str, **overrides):
    nvml = FakeNvml(scenario)
    app = make_app(nvml=nvml, **overrides)
    svc(app).monitor.collect_once()
    return app, app.test_client(), nvml


def test_every_route_answers_503_before_the_first_collection_and_records_no_refusal(make_app):
    app = make_app(nvml=FakeNvml("two_unequal"))
    client = app.test_client()
    for path in ("/api/metrics/dashboard", "/api/metrics/gpu", "/api/metrics/apis", "/api/metrics/optimization",
                 "/gpu", "/system"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.get_json() == {"error": "no metrics collected yet"}
        assert int(response.headers["Retry-After"]) >= 1
    records, _ = svc(app).engine.records.since(0)
    assert records == []  # probes: no failed request for the error-rate alert to count
    assert client.get("/api/alerts").status_code == 200  # history needs no collection


def test_four_gpus_with_different_values(make_app):
    _, client, _ = collected(make_app, "four_detailed")
    body = client.get("/api/metrics/gpu").get_json()
    assert body["driver_version"] == "550.54.15" and body["cuda_version"] == "12.4"
    assert body["gpu_count"] == 4 and body["gpu_available"] is True and body["lost_gpus"] == []
    gpus = body["gpus"]
    assert [g["name"] for g in gpus] == ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060", "NVIDIA A2",
                                         "NVIDIA GeForce GTX 1080 Ti"]
    first = gpus[0]
    assert first["temperature"] == 83 and first["utilization_percent"] == 97
    assert first["memory_total"] == 24576 and first["memory_used"] == 6144 and first["memory_percent"] == 25.0
    assert first["power_draw"] == 348.2 and first["power_limit"] == 350.0 and first["fan_speed"] == 78
    assert first["throttle_reasons"] == ["sw_power_cap", "sw_thermal_slowdown"]
    # Thermal bands: 83 critical, 47 good, 72 warning, 36 good; the machine's is the hottest GPU's.
    assert [g["thermal_status"] for g in gpus] == ["critical", "good", "warning", "good"]
    assert body["thermal_status"] == "critical"
    # The passively cooled A2 reports no fan: the field is absent, not 0.
    assert "fan_speed" not in gpus[2] and gpus[2]["power_draw"] == 58.5
    assert body["total_memory_available"] == 24576 + 12288 + 16384 + 11264
    assert body["total_memory_used"] == 6144 + 1536 + 3072 + 512
    assert body["average_temperature"] == round((83 + 47 + 72 + 36) / 4, 1)
    assert body["average_utilization"] == round((97 + 12 + 55 + 0) / 4, 1)

    seed = client.get("/gpu").get_json()  # the 3090 seed: the first GPU only, its key names and units
    assert seed == {"name": "NVIDIA GeForce RTX 3090", "driver_version": "550.54.15", "memory_total_mb": 24576,
                    "memory_used_mb": 6144, "utilization_gpu": 97, "utilization_mem": 61, "temperature_gpu": 83,
                    "power_draw_w": 348.2, "power_limit_w": 350.0, "fan_speed_pct": 78}

    dashboard = client.get("/api/metrics/dashboard").get_json()
    assert dashboard["gpu_metrics"]["gpus"] == gpus
    assert dashboard["gpu_metrics"]["total_memory_available"] == body["total_memory_available"]
    assert dashboard["status"]["status"] in ("healthy", "warning", "critical")
    assert set(dashboard["health"]["components"]) >= {"gpu"}
    assert dashboard["health"]["components"]["gpu"]["inputs"]["temperature_celsius"] == 83
    assert [m["name"] for m in dashboard["models"]] and dashboard["requests"] == []


@pytest.mark.parametrize("temperature,band", [(69.9, "good"), (70, "warning"), (79.9, "warning"), (80, "critical"),
                                              (85, "critical"), (85.1, "emergency")])
def test_thermal_bands_at_their_boundaries(make_app, temperature, band):
    nvml = FakeNvml("two_unequal")
    nvml.devices[0]["temp"] = temperature
    app = make_app(nvml=nvml)
    svc(app).monitor.collect_once()
    body = app.test_client().get("/api/metrics/gpu").get_json()
    assert body["gpus"][0]["thermal_status"] == band and body["thermal_status"] == band


def test_a_not_supported_field_is_absent_not_zero(make_app):
    _, client, _ = collected(make_app, "not_supported_fields")
    second = client.get("/api/metrics/gpu").get_json()["gpus"][1]
    assert "temperature" not in second and "power_draw" not in second
    assert second["thermal_status"] == "unknown" and second["memory_total"] == 16384


def test_a_gpu_lost_mid_run_is_marked(make_app):
    app, client, _ = collected(make_app, "lost_mid_run")
    first = client.get("/api/metrics/gpu").get_json()
    assert [g["lost"] for g in first["gpus"]] == [False, False] and first["lost_gpus"] == []
    svc(app).monitor.collect_once()  # the second card falls off the bus between the two reads
    body = client.get("/api/metrics/gpu").get_json()
    lost = body["gpus"][1]
    assert lost["lost"] is True and lost["error"] and lost["thermal_status"] == "unknown"
    assert lost["name"] == "NVIDIA GeForce RTX 3090"  # from its last good read
    assert "temperature" not in lost and "memory_used" not in lost
    assert body["lost_gpus"] == [1] and "GPU 1 lost" in body["message"]
    assert body["total_memory_available"] == 24576  # the lost card no longer counts
    assert client.get("/gpu").status_code == 200  # GPU 0 still answers
    dashboard = client.get("/api/metrics/dashboard").get_json()
    assert dashboard["gpu_metrics"]["gpus"][1]["lost"] is True
    health = client.get("/health").get_json()["components"]["metrics"]
    assert health["gpu"]["lost"] == [1]


def test_no_library_says_no_gpu_plainly(make_app):
    _, client, _ = collected(make_app, "no_library")
    body = client.get("/api/metrics/gpu").get_json()
    assert body["gpus"] == [] and body["gpu_available"] is False and body["thermal_status"] == "no_gpu"
    assert body["message"].startswith("no GPU: ") and "Library Not Found" in body["message"]
    assert body["total_memory_used"] == 0 and body["average_temperature"] is None
    seed = client.get("/gpu")
    assert seed.status_code == 503 and seed.get_json()["detail"].startswith("GPU query failed: no GPU")
    dashboard = client.get("/api/metrics/dashboard").get_json()
    assert dashboard["gpu_metrics"]["gpu_available"] is False and "no GPU" in dashboard["gpu_metrics"]["message"]
    assert "gpu" in dashboard["health"]["skipped"]
    health = client.get("/health")
    assert health.status_code in (200, 503)
    assert health.get_json()["components"]["metrics"]["gpu"] == {
        "available": False, "reason": "NVML unavailable: NVML Shared Library Not Found", "count": 0, "lost": []}


def test_system_document(make_app):
    _, client, _ = collected(make_app, "two_unequal")
    body = client.get("/system").get_json()
    assert 0 < body["ram_total_gb"] and 0 <= body["ram_percent"] <= 100
    assert body["ram_used_gb"] == round(body["ram_used_gb"], 1)
    if "cpu_load" in body:  # unknown on the collecting thread's first read
        assert 0 <= body["cpu_load"] <= 1
    assert body["disk"] and {"mount", "used_gb", "total_gb", "percent"} <= set(body["disk"][0])


def test_apis_optimization_and_series(make_app):
    app, client, _ = collected(make_app, "two_unequal")
    client.post("/api/chat", json={"model": "nope", "messages": []})  # a 404: a client error, counted apart
    svc(app).monitor.collect_once()
    apis = client.get("/api/metrics/apis").get_json()
    assert apis["overallHealth"] in ("healthy", "degraded", "unhealthy")
    row = next(r for r in apis["endpoints"] if r["path"] == "/api/chat")
    assert {"endpoint", "path", "total_requests", "successful_requests", "failed_requests", "average_response_time",
            "success_rate", "last_request_time", "status"} <= set(row)
    optimization = client.get("/api/metrics/optimization").get_json()
    assert 0 <= optimization["score"] <= 100 and optimization["recommendations"][0]["priority"] >= 1
    assert set(optimization["kpis"]) == {"throughput_tokens_per_second", "latency_p95_ms",
                                         "efficiency_gpu_utilization_percent", "reliability_success_rate_percent",
                                         "scalability_concurrent_capacity"}
    series = client.get("/api/metrics/dashboard?since=-600&step=60").get_json()["series"]
    assert series["health_score"] and len(series["health_score"][-1]) == 2
    assert series["gpu_temperature_celsius"][-1][1] == pytest.approx((61 + 44) / 2)
    assert client.get("/api/metrics/dashboard?since=abc").status_code == 400
    assert client.get("/api/metrics/dashboard?since=0&step=1").status_code == 400  # too many points


def test_health_reports_a_locked_metrics_db_without_changing_its_status(make_app, tmp_path):
    app, client, _ = collected(make_app, "two_unequal", metrics_busy_timeout=0.05)
    before = client.get("/health")
    assert before.get_json()["components"]["metrics"]["store"]["state"] == "ok"
    holder = sqlite3.connect(str(tmp_path / "data" / "metrics.db"), timeout=0.05)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        svc(app).monitor.collect_once()  # the write is skipped, never raised
        after = client.get("/health")
        metrics = after.get_json()["components"]["metrics"]
        assert metrics["store"]["state"] == "locked" and metrics["status"] == "locked"
        assert metrics["store"]["message"] == "metrics store: locked, collection skipped"
        assert metrics["last_collection"]
        assert after.status_code == before.status_code
        assert client.get("/api/metrics/dashboard").status_code == 200  # served from memory
        alerts = client.get("/api/alerts")
        assert alerts.status_code == 200
    finally:
        holder.rollback()
        holder.close()
    svc(app).monitor.collect_once()
    assert client.get("/health").get_json()["components"]["metrics"]["store"]["state"] == "ok"


# --- /api/ps size_vram ---------------------------------------------------------------------------

@pytest.fixture
def header_app(tmp_path, fake_backend):
    """An app over one inspectable GGUF (4 blocks), so the store knows its per-layer bytes."""
    def build(offload: bool, gpu_layers: int):
        models = tmp_path / "gguf"
        models.mkdir(exist_ok=True)
        write_header_model(models / "m.gguf", blocks=4)
        original = fake_backend.load

        def load(path, options):
            model = original(path, options)
            if offload:  # what LlamaBackend reports on a build with GPU offload
                model.facts = dataclasses.replace(model.facts, gpu_offload_supported=True,
                                                  gpu_layers=options.n_gpu_layers)
            return model
        fake_backend.load = load
        settings = build_settings({"models_dir": [str(models)], "data_dir": str(tmp_path / "data"),
                                   "default_context_size": 256, "parallel_slots": 1, "gpu_layers": gpu_layers})
        return create_app({"TESTING": True, "SETTINGS": settings, "BACKEND": fake_backend, "NVML": None})
    return build


def _ps_after_load(app) -> dict:
    services = svc(app)
    spec = services.engine.load(None)
    model = app.test_client().get("/api/ps").get_json()["models"][0]
    return {"size_vram": model["size_vram"], "info": services.store.info(spec), "spec": spec, "svc": services}


def test_ps_size_vram_is_zero_without_gpu_offload(header_app):
    assert _ps_after_load(header_app(offload=False, gpu_layers=-1))["size_vram"] == 0


def test_ps_size_vram_counts_every_layer_when_all_are_offloaded(header_app):
    from ollama_server.engine import planner
    got = _ps_after_load(header_app(offload=True, gpu_layers=-1))
    info = got["info"]
    assert len(info.layer_bytes) == 4
    kv = planner.kv_bytes_per_layer(info, got["svc"].engine.runtime_context(got["spec"]), 1)
    assert kv > 0
    assert got["size_vram"] == sum(info.layer_bytes) + 4 * kv + planner.output_layer_bytes(info)


def test_ps_size_vram_counts_the_last_layers_when_some_are_offloaded(header_app):
    from ollama_server.engine import planner
    got = _ps_after_load(header_app(offload=True, gpu_layers=2))
    info = got["info"]
    kv = planner.kv_bytes_per_layer(info, got["svc"].engine.runtime_context(got["spec"]), 1)
    # llama.cpp offloads the last slots first: the output layer, then the last block.
    assert got["size_vram"] == planner.output_layer_bytes(info) + info.layer_bytes[-1] + kv


def test_ps_size_vram_is_zero_with_gpu_layers_zero(header_app):
    assert _ps_after_load(header_app(offload=True, gpu_layers=0))["size_vram"] == 0
