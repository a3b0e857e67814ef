"""The companion API's service information on the fake back-end and fake NVML: /config, /logs/<component>,
/status, /diag, and the seed's keys added to /health, /info (TGI's) and /version (vLLM's)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import platform

import llama_cpp
import pytest

from ollama_server import __version__
from ollama_server import log_files
from ollama_server.api.companion import about
from ollama_server.jobs.paths import JobPaths
from ollama_server.log_files import install_log_files
from ollama_server.services import EXTENSION_KEY
from ollama_server.settings import SETTINGS
from tests.fakes.nvml import FakeNvml
from tests.waiting import wait_for

TGI_INFO_KEYS = {"model_id", "model_sha", "model_dtype", "model_device_type", "model_pipeline_tag",
                 "max_concurrent_requests", "max_best_of", "max_stop_sequences", "max_input_tokens",
                 "max_total_tokens", "validation_workers", "max_client_batch_size", "router", "version", "sha",
                 "docker_label"}


def with_about(app):
    """The app with the about blueprint (until the factory registers it itself)."""
    if about.bp.name not in app.blueprints:
        app.register_blueprint(about.bp)
    return app


def svc(app):
    return app.extensions[EXTENSION_KEY]




@pytest.fixture
def app(make_app):
    built = with_about(make_app())
    yield built
    svc(built).close()


@pytest.fixture
def http(app):
    return app.test_client()


@pytest.fixture
def clean_log_handlers():
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if getattr(h, log_files._MARK, None)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


# --- /config ----------------------------------------------------------------------------------------
def test_config_reports_the_seed_directories_the_port_and_every_setting(app, http, tmp_path):
    body = http.get("/config").get_json()
    base = tmp_path / "data"  # base_dir "" means data_dir
    assert body["base_dir"] == str(base) and body["runs_dir"] == str(base / "runs")
    assert body["datasets_dir"] == str(base / "datasets") and body["db_path"] == str(base / "db.sqlite")
    assert body["models_dir"] == str(tmp_path / "models")  # the first configured models_dir
    assert body["port"] == 11435
    assert set(body["settings"]) == {s.name for s in SETTINGS}
    assert body["settings"]["models_dir"] == [str(tmp_path / "models")]  # tuples as lists
    assert body["settings"]["default_max_tokens"] == 512  # a count of tokens, not a token
    assert body["settings"]["api_key"] == ""  # unset: nothing to hide


def test_config_follows_base_dir_and_datasets_dir(make_app, tmp_path):
    app = with_about(make_app(base_dir=str(tmp_path / "llm"), datasets_dir=str(tmp_path / "sets"), port=8765))
    body = app.test_client().get("/config").get_json()
    assert body["base_dir"] == str(tmp_path / "llm") and body["datasets_dir"] == str(tmp_path / "sets")
    assert body["runs_dir"] == str(tmp_path / "llm" / "runs") and body["port"] == 8765
    paths = svc(app).jobs.paths
    assert body["db_path"] == str(paths.db_path)
    svc(app).close()


def test_config_redacts_the_api_key_and_keeps_switches_named_key(make_app):
    app = with_about(make_app(api_key="s3cret-value", metrics_require_key=True))
    http = app.test_client()
    assert http.get("/config").status_code == 401  # the settings are behind the key
    answer = http.get("/config", headers={"Authorization": "Bearer s3cret-value"})
    assert answer.status_code == 200
    assert answer.get_json()["settings"]["api_key"] == "***"
    assert answer.get_json()["settings"]["metrics_require_key"] is True
    assert "s3cret-value" not in answer.get_data(as_text=True)
    svc(app).close()


@pytest.mark.parametrize("name, value, secret", [("api_key", "k", True), ("smtp_password", "p", True),
                                                 ("webhook_secret", "s", True), ("hf_token", "t", True),
                                                 ("metrics_require_key", True, False),
                                                 ("default_max_tokens", 512, False), ("keyboard", "x", False)])
def test_a_text_setting_is_secret_when_a_word_of_its_name_says_so(name, value, secret):
    assert about.is_secret(name, value) is secret


# --- /logs/<component> -------------------------------------------------------------------------------
def test_logs_of_an_unknown_component_is_400_listing_the_choices(http):
    answer = http.get("/logs/kernel")
    assert answer.status_code == 400
    assert answer.get_json()["detail"] == "Invalid component. Choose from: ['api_server', 'gpu_worker', 'jobs']"


@pytest.mark.parametrize("lines", ["0", "-3", "10001", "many", "1.5", ""])
def test_it_returns_400_naming_lines_when_lines_is_out_of_range_or_not_a_number(http, lines):
    answer = http.get(f"/logs/jobs?lines={lines}")
    assert answer.status_code == 400
    assert "lines" in answer.get_json()["detail"]


def test_logs_before_the_file_exists_is_an_empty_list(http):
    assert http.get("/logs/gpu_worker").get_json() == {"component": "gpu_worker", "lines": []}


def test_logs_return_the_last_lines_the_component_wrote(app, http, clean_log_handlers):
    install_log_files(svc(app).jobs.paths.logs_dir, "INFO")
    jobs_log = logging.getLogger("ollama_server.jobs.worker")
    for i in range(150):
        jobs_log.info("job step %d", i)
    logging.getLogger("ollama_server.engine.pool").info("loaded tiny")
    for handler in logging.getLogger().handlers:
        handler.flush()
    body = http.get("/logs/jobs").get_json()
    assert body["component"] == "jobs" and len(body["lines"]) == 100  # the default
    def message(line: str) -> str:
        return json.loads(line)["message"]  # the files hold JSON lines (log_format)
    assert message(body["lines"][-1]) == "job step 149" and message(body["lines"][0]) == "job step 50"
    two = http.get("/logs/jobs?lines=2").get_json()["lines"]
    assert [message(line) for line in two] == ["job step 148", "job step 149"]
    gpu = http.get("/logs/gpu_worker?lines=10000").get_json()["lines"]
    assert len(gpu) == 1 and message(gpu[0]) == "loaded tiny"


# --- /status -----------------------------------------------------------------------------------------
def test_status_lists_loaded_models_and_the_limits(app, http):
    svc(app).engine.load("tiny")
    body = http.get("/status").get_json()
    assert body["cached_models"] == ["tiny:latest"] and body["cache_size"] == 1 and body["max_cache"] == 2
    assert body["failed_loads"] == {} and body["loading"] == []
    assert body["config"] == {"max_cache_models": 2, "cooldown_seconds": 30.0, "parallel_slots": 1,
                              "max_queue": 64, "default_context_size": 256, "request_timeout": 600.0}
    assert body["llama_cpp_available"] is True


def test_status_shows_a_failed_load_with_its_error_and_cooldown(app, http, fake_backend):
    fake_backend.load_error = RuntimeError("out of memory")
    assert http.post("/v1/completions", json={"model": "big", "prompt": "hi", "max_tokens": 1}).status_code >= 500
    failed = http.get("/status").get_json()["failed_loads"]
    assert list(failed) == ["big:latest"]
    assert "out of memory" in failed["big:latest"]["error"]
    assert 0 < failed["big:latest"]["retry_after_s"] <= 30.0
    assert len(failed["big:latest"]["at"]) == 19 and failed["big:latest"]["at"][10] == "T"  # local ISO time, seconds


# --- /diag -------------------------------------------------------------------------------------------
def test_diag_reports_llama_cpp_nvml_and_the_seed_cuda_keys(make_app):
    app = with_about(make_app(nvml=FakeNvml("four_detailed")))
    svc(app).monitor.collect_once()
    body = app.test_client().get("/diag").get_json()
    llama = body["llama_cpp"]
    assert llama["installed"] is True and llama["importable"] is True
    assert llama["version"] == importlib.metadata.version("llama-cpp-python")
    assert llama["supports_gpu_offload"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert llama["system_info"] == llama_cpp.llama_print_system_info().decode().strip()
    assert llama["devices"] and all(set(d) == {"index", "name", "description", "type"} for d in llama["devices"])
    assert "cpu" in [d["type"] for d in llama["devices"]]  # every build has the CPU backend
    assert body["nvml"] == {"available": True, "reason": None, "driver_version": "550.54.15",
                            "cuda_driver_version": "12.4"}
    assert body["cuda_count"] == 4
    assert body["cuda_devices"][0] == {"index": 0, "name": "NVIDIA GeForce RTX 3090"}
    assert [d["index"] for d in body["cuda_devices"]] == [0, 1, 2, 3]
    # CUDA here means llama.cpp can use these GPUs: the driver sees them and the build can offload.
    assert body["cuda_available"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert body["torch_installed"] is (importlib.util.find_spec("torch") is not None)
    svc(app).close()


def test_diag_without_a_driver_says_why_and_counts_no_device(make_app):
    app = with_about(make_app(nvml=FakeNvml("no_driver")))
    body = app.test_client().get("/diag").get_json()
    assert body["nvml"]["available"] is False and "Driver Not Loaded" in body["nvml"]["reason"]
    assert body["cuda_available"] is False and body["cuda_count"] == 0 and body["cuda_devices"] == []
    svc(app).close()


# --- /health, /info, /version additions ----------------------------------------------------------------
def test_health_adds_the_seed_gpu_active_model_and_worker_busy(make_app):
    app = with_about(make_app(nvml=FakeNvml("four_detailed")))
    svc(app).monitor.collect_once()
    body = app.test_client().get("/health").get_json()
    # Ours stay: the placeholder model files fail inspection, so "degraded" and its problems.
    assert body["status"] == "degraded" and body["problems"] and "components" in body and "timestamp" in body
    assert body["gpu"] == {"available": True, "device_count": 4, "current_device": 0,
                           "device_name": "NVIDIA GeForce RTX 3090",
                           "memory_allocated_gb": round(6 * 1024 ** 3 / 1e9, 2),
                           "memory_reserved_gb": round(6 * 1024 ** 3 / 1e9, 2)}
    assert body["active_model"] == "tiny:latest"  # nothing set active: the smallest
    assert body["worker_busy"] is False
    svc(app).store.set_active("big:latest")
    assert app.test_client().get("/health").get_json()["active_model"] == "big:latest"
    svc(app).close()


def test_health_gpu_without_a_gpu_is_unavailable_with_zero_memory(make_app):
    app = with_about(make_app(nvml=FakeNvml("no_driver")))
    svc(app).monitor.collect_once()
    assert app.test_client().get("/health").get_json()["gpu"] == {
        "available": False, "device_count": 0, "current_device": None, "device_name": None,
        "memory_allocated_gb": 0, "memory_reserved_gb": 0}
    svc(app).close()


def test_health_gpu_is_an_error_when_the_first_gpu_is_lost(make_app):
    nvml = FakeNvml("two_unequal")
    nvml.devices[0]["handle"] = nvml.NVMLError_GpuIsLost
    app = with_about(make_app(nvml=nvml))
    svc(app).monitor.collect_once()
    gpu = app.test_client().get("/health").get_json()["gpu"]
    assert list(gpu) == ["error"] and "GPU 0 is lost" in gpu["error"]
    svc(app).close()


def test_health_says_the_worker_is_busy_while_a_job_runs(app, http, fake_backend):
    jobs = svc(app).jobs
    (jobs.paths.datasets_dir / "math.jsonl").write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    fake_backend.gate.clear()  # the job's generation waits here
    fake_backend.enqueue("4")
    jobs.start()
    created = http.post("/eval/jobs", json={"model_id": "tiny", "name": "m", "dataset_ref": "math.jsonl"})
    assert created.status_code == 200, created.get_json()
    job_id = created.get_json()["job_id"]
    wait_for(lambda: jobs.worker.busy, "the job to start")
    assert http.get("/health").get_json()["worker_busy"] is True
    fake_backend.gate.set()
    wait_for(lambda: http.get(f"/jobs/{job_id}").get_json()["status"] in ("done", "failed"), "the job to end")
    wait_for(lambda: not jobs.worker.busy, "the worker to be idle")
    assert http.get("/health").get_json()["worker_busy"] is False


def test_info_keeps_every_tgi_key_and_adds_the_seed_directories(app, http, tmp_path):
    body = http.get("/info").get_json()
    assert TGI_INFO_KEYS <= set(body)
    assert body["model_id"] == "tiny:latest" and body["version"] == __version__
    assert body["api_version"] == "1.0.0"
    paths = JobPaths.for_settings(svc(app).settings)
    assert body["base_dir"] == str(paths.base_dir) and body["runs_dir"] == str(paths.runs_dir)
    assert body["datasets_dir"] == str(paths.datasets_dir) and body["db_path"] == str(paths.db_path)
    assert body["models_dir"] == str(tmp_path / "models")


def test_version_keeps_vllms_key_and_adds_the_seed_versions(make_app):
    app = with_about(make_app(nvml=FakeNvml("two_unequal", cuda_version=12080)))
    body = app.test_client().get("/version").get_json()
    assert body["version"] == __version__ and body["api_version"] == "1.0.0"
    assert body["python_version"] == platform.python_version()
    expected_torch = importlib.metadata.version("torch") if importlib.util.find_spec("torch") else None
    assert body["torch_version"] == expected_torch
    expected_tf = importlib.metadata.version("transformers") if importlib.util.find_spec("transformers") else None
    assert body["transformers_version"] == expected_tf
    assert body["llama_cpp_python_version"] == importlib.metadata.version("llama-cpp-python")
    assert body["gpu_available"] is True and body["cuda_version"] == "12.8"
    assert body["cuda_available"] is bool(llama_cpp.llama_supports_gpu_offload())
    svc(app).close()


def test_version_without_a_gpu_has_no_cuda(make_app):
    app = with_about(make_app(nvml=FakeNvml("no_driver")))
    body = app.test_client().get("/version").get_json()
    assert body["gpu_available"] is False and body["cuda_available"] is False and body["cuda_version"] is None
    svc(app).close()


def test_the_version_probe_stays_open_with_an_api_key(make_app):
    app = with_about(make_app(api_key="k"))
    assert app.test_client().get("/version").status_code == 200
    svc(app).close()

