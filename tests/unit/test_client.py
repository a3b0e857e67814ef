"""ollama_server.client against the app behind a real loopback HTTP server (werkzeug), on the fake back-end:
the base URL, each route's decoded JSON, jobs end to end, shard downloads, and 4xx/5xx as ClientError."""
from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from ollama_server.api.companion import about
from ollama_server.client import Client
from ollama_server.client import ClientError
from ollama_server.client import default_base_url
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import FakeNvml
from tests.fakes.tiny_gguf import write_header_model

MATH = [{"question": "What is 2+3?", "answer": "5"}, {"question": "What is 4+4?", "answer": "8"}]


def serve(app):
    """The app on 127.0.0.1:<free port> in a thread; returns (base URL, stop)."""
    if about.bp.name not in app.blueprints:  # until the factory registers it itself
        app.register_blueprint(about.bp)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        thread.join(timeout=10)
        app.extensions[EXTENSION_KEY].close()
    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture
def app(make_app):
    return make_app(nvml=FakeNvml("two_unequal"))


@pytest.fixture
def client(app):
    url, stop = serve(app)
    with Client(url, timeout=30) as made:
        yield made
    stop()


def jobs_of(app):
    return app.extensions[EXTENSION_KEY].jobs


# --- the base URL -------------------------------------------------------------------------------------
@pytest.mark.parametrize("environ, url", [
    ({}, "http://localhost:11435"),
    ({"OLLAMA_SERVER_URL": "http://gpu-box:9000/"}, "http://gpu-box:9000"),
    ({"OLLAMA_SERVER_URL": "http://a:1", "INFERENCE_HOST": "b"}, "http://a:1"),
    ({"INFERENCE_HOST": "gpu-box"}, "http://gpu-box:11435"),
    ({"INFERENCE_PORT": "8765"}, "http://localhost:8765"),
    ({"INFERENCE_HOST": "10.0.0.5", "INFERENCE_PORT": "8765"}, "http://10.0.0.5:8765"),
])
def test_the_base_url_comes_from_the_environment_like_the_seeds_client(environ, url):
    assert default_base_url(environ) == url


def test_a_client_without_a_base_url_reads_the_process_environment(monkeypatch):
    monkeypatch.delenv("OLLAMA_SERVER_URL", raising=False)
    monkeypatch.setenv("INFERENCE_HOST", "trainer-peer")
    monkeypatch.setenv("INFERENCE_PORT", "8765")
    assert Client().base_url == "http://trainer-peer:8765"


# --- service information ---------------------------------------------------------------------------------
def test_service_information_methods_return_the_servers_json(app, client):
    health = client.health()
    assert health["worker_busy"] is False and health["active_model"] == "tiny:latest"
    assert health["components"]["models"]["count"] == 2
    info = client.info()
    assert info["model_id"] == "tiny:latest" and info["api_version"] == "1.0.0"
    assert info["base_dir"] == str(jobs_of(app).paths.base_dir)
    assert client.version()["api_version"] == "1.0.0"
    assert client.config()["db_path"] == str(jobs_of(app).paths.db_path)
    assert client.status()["max_cache"] == 2
    assert client.diag()["nvml"]["driver_version"] == "550.54.15"


def test_gpu_stats_and_system_read_the_last_collection(app, client):
    with pytest.raises(ClientError) as caught:  # nothing collected yet
        client.gpu_stats()
    assert caught.value.status == 503
    app.extensions[EXTENSION_KEY].monitor.collect_once()
    assert client.gpu_stats()["name"] == "NVIDIA GeForce RTX 4090"
    assert "ram_total_gb" in client.system()


def test_logs_return_the_component_and_its_lines(client):
    assert client.logs("jobs", lines=5) == {"component": "jobs", "lines": []}


def test_a_detail_body_becomes_a_client_error_with_the_status_and_message(client):
    with pytest.raises(ClientError) as caught:
        client.logs("kernel")
    assert caught.value.status == 400
    assert caught.value.detail == "Invalid component. Choose from: ['api_server', 'gpu_worker', 'jobs']"
    with pytest.raises(ClientError) as caught:
        client.logs("jobs", lines=0)
    assert caught.value.status == 400 and "lines" in caught.value.detail


def test_an_error_body_and_an_unknown_route_become_client_errors(client):
    with pytest.raises(ClientError) as caught:
        client.get_job("eval_19990101_000000")
    assert caught.value.status == 404 and caught.value.detail == "Job eval_19990101_000000 not found"
    with pytest.raises(ClientError) as caught:
        client._json("GET", "/no/such/route")
    assert caught.value.status == 404 and caught.value.detail  # PLAIN's {"error": "..."}
    assert str(caught.value).startswith("404: ")


def test_the_api_key_is_sent_as_a_bearer_token(make_app):
    url, stop = serve(make_app(api_key="k-123"))
    try:
        with pytest.raises(ClientError) as caught:
            Client(url, api_key="").config()
        assert caught.value.status == 401 and caught.value.detail == "Unauthorized"
        assert Client(url, api_key="k-123").config()["settings"]["api_key"] == "***"
    finally:
        stop()


def test_the_api_key_defaults_to_the_servers_environment_variable(make_app, monkeypatch):
    url, stop = serve(make_app(api_key="k-env"))
    try:
        monkeypatch.setenv("OLLAMA_SERVER_API_KEY", "k-env")
        assert Client(url).status()["cache_size"] == 0
    finally:
        stop()


# --- models ----------------------------------------------------------------------------------------------
def test_models_can_be_listed_registered_and_made_active(client, tmp_path):
    names = [m.get("name") or m.get("id") for m in client.list_models()["models"]]
    assert "tiny:latest" in names and "big:latest" in names
    checkpoint = write_header_model(tmp_path / "step-5000.gguf", blocks=1)
    registered = client.register_model("qwen3-step-5000", path=str(checkpoint), tags="step5000,math")
    assert registered["status"] == "registered" and registered["id"] == "qwen3-step-5000:latest"
    assert registered["tags"] == "step5000,math" and registered["source"] == "api"
    names = [m.get("name") or m.get("id") for m in client.list_models()["models"]]
    assert "qwen3-step-5000:latest" in names
    assert client.set_active_model("qwen3-step-5000")["status"] == "activated"
    active = client.active_model()
    assert active["id"] == "qwen3-step-5000:latest" and active["path"] == str(checkpoint)
    with pytest.raises(ClientError) as caught:
        client.set_active_model("no-such-model")
    assert caught.value.status == 404


# --- power profiles --------------------------------------------------------------------------------------
def test_power_profiles_can_be_read_and_set(client):
    assert set(client.power_profile()["profiles"]) == {"quiet", "normal", "max"}
    applied = client.set_power_profile("quiet")
    assert applied["profile"] == "quiet" and applied["max_concurrent_jobs"] == 1
    assert client.power_profile()["current"] == "quiet"
    with pytest.raises(ClientError) as caught:
        client.set_power_profile("turbo")
    assert caught.value.status == 400
    assert caught.value.detail == "Invalid profile. Choose from: ['quiet', 'normal', 'max']"


# --- jobs ------------------------------------------------------------------------------------------------
def test_an_eval_then_a_data_gen_job_run_to_the_end_and_the_shard_downloads(app, client, fake_backend, tmp_path):
    jobs = jobs_of(app)
    (jobs.paths.datasets_dir / "math_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH))
    for reply in ("5", "nine"):
        fake_backend.enqueue(reply)
    jobs.start()
    created = client.eval_job("tiny", "math_eval_step_1", "math_eval.jsonl", metrics=["accuracy"], max_samples=10)
    assert created["status"] == "pending" and created["job_id"].startswith("eval_")
    seen = []
    done = client.wait_for_job(created["job_id"], poll_interval=0.02, timeout=60, on_poll=seen.append)
    assert done["status"] == "done", done["error"]
    assert done["result"]["accuracy"] == 0.5 and seen[-1] == done
    assert client.get_eval_job(created["job_id"])["result"]["correct"] == 1

    fake_backend.enqueue("4 plus 4 is 8. The answer is 8.")
    gen = client.data_gen_job("tiny", "fix_eval_failures", config={"source_eval_run_id": created["job_id"]})
    assert gen["job_id"].startswith("datagen_")
    assert client.wait_for_job(gen["job_id"], poll_interval=0.02, timeout=60)["status"] == "done"
    shards = client.get_data_gen_job(gen["job_id"])["shards"]
    assert len(shards) == 1
    saved = client.download_shard(shards[0], tmp_path / "incoming")
    assert saved == tmp_path / "incoming" / shards[0]
    assert saved.read_bytes() == (jobs.paths.shards_dir / shards[0]).read_bytes()
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == [shards[0]]  # no partial file left

    listed = client.list_jobs(type="eval")["jobs"]
    assert [j["id"] for j in listed] == [created["job_id"]]
    assert [j["id"] for j in client.list_jobs(limit=1)["jobs"]] == [gen["job_id"]]  # newest first
    assert client.job_stats()["done"] == 2


def test_a_pending_job_can_be_cancelled_and_waiting_returns_it(app, client):
    (jobs_of(app).paths.datasets_dir / "m.jsonl").write_text(json.dumps(MATH[0]) + "\n")
    job_id = client.eval_job("tiny", "m", "m.jsonl")["job_id"]  # the worker is not started: it stays pending
    assert client.get_job(job_id)["status"] == "pending"
    assert client.cancel_job(job_id)["status"] == "cancelled"
    assert client.wait_for_job(job_id, poll_interval=0.02, timeout=60)["status"] == "cancelled"
    with pytest.raises(ClientError) as caught:
        client.cancel_job(job_id)
    assert caught.value.status == 409


def test_waiting_past_the_timeout_raises_timeout_error(app, client):
    (jobs_of(app).paths.datasets_dir / "m.jsonl").write_text(json.dumps(MATH[0]) + "\n")
    job_id = client.eval_job("tiny", "m", "m.jsonl")["job_id"]
    with pytest.raises(TimeoutError, match=job_id):
        client.wait_for_job(job_id, poll_interval=0.02, timeout=0)


def test_a_missing_shard_is_a_client_error_and_leaves_no_file(client, tmp_path):
    dest = tmp_path / "incoming"
    with pytest.raises(ClientError) as caught:
        client.download_shard("shard_2025-11-22_001.jsonl", dest)
    assert caught.value.status == 404
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("name", ["../db.sqlite", "a/b.jsonl", "", ".."])
def test_a_shard_name_with_a_path_is_refused_before_any_request(client, tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        client.download_shard(name, tmp_path)
