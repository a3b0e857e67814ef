"""The real Prometheus tooling against a live server on the real model: `promtool check metrics` on a live
scrape, and a real `prometheus` that scrapes it on loopback and answers PromQL about our request counter.

The server is a subprocess, so the fake NVML cannot reach it: on a machine without an NVIDIA GPU the scrape
has `llm_gpu_devices 0` and no other GPU series (the four-GPU exposition is linted in tests/unit/test_exporter.py).
Prometheus listens on a port of its own: Debian's package may also run one on :9090, which is never used here.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer
from tests.conftest import free_port

pytestmark = pytest.mark.model
DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana-dashboard.json"
DEADLINE_S = 90.0


def wait_for(condition, what: str, timeout: float = DEADLINE_S, interval: float = 0.2):
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error})")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prometheus-live")
    with LiveServer(workdir, {"default_context_size": 512, "parallel_slots": 2, "metrics_interval": 1.0,
                              "log_level": "INFO"}) as live:
        yield live


@pytest.fixture(scope="module")
def traffic(server):
    """A few real requests in two dialects and one refusal, then a collection that has drained them."""
    model = requests.get(server.url + "/v1/models", timeout=30).json()["data"][0]["id"]
    for _ in range(2):
        answer = requests.post(server.url + "/v1/chat/completions", timeout=120, json={
            "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi"}]})
        assert answer.status_code == 200, answer.text
    answer = requests.post(server.url + "/api/generate", timeout=120, json={
        "model": model, "prompt": "The capital of France is", "stream": False, "options": {"num_predict": 3}})
    assert answer.status_code == 200, answer.text
    assert requests.get(server.url + "/no/such/route", timeout=30).status_code == 404

    def scraped():
        text = requests.get(server.url + "/metrics", timeout=10).text
        ready = "\nllm_health_score " in text and 'api="openai"' in text and 'api="ollama"' in text
        return text if ready else None
    return model, wait_for(scraped, "a collection with the requests on /metrics")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (`make system-deps` as root)")
def test_promtool_checks_a_live_scrape_clean(server, traffic):
    body = requests.get(server.url + "/metrics", timeout=10).content
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    print(f"promtool check metrics: rc={result.returncode} stdout={result.stdout!r} stderr={result.stderr!r}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", "no lint lines"
    assert b"llm_gpu_devices 0.0" in body or b"llm_gpu_temperature_celsius{" in body


def test_the_live_scrape_has_the_seed_names_and_no_created(server, traffic):
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    for name in ("llm_request_duration_seconds_bucket{", "llm_requests_total{", "llm_active_requests ",
                 "llm_queued_requests ", "llm_health_score ", "inference_requests_total{",
                 "inference_duration_seconds_count", "active_requests ", "llm_prompt_tokens_total{",
                 "llm_generated_tokens_total{", "llm_time_to_first_token_seconds_bucket{"):
        assert name in text, name
    assert "_created" not in text


def test_scrapes_are_fast_after_a_collection(server, traffic):
    session = requests.Session()
    times = []
    for _ in range(200):
        started = time.perf_counter()
        assert session.get(server.url + "/metrics", timeout=10).status_code == 200
        times.append(time.perf_counter() - started)
    p95 = statistics.quantiles(times, n=100)[94]
    print(f"/metrics scrape over 200: p50 {statistics.median(times) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms, "
          f"max {max(times) * 1000:.2f} ms")
    assert p95 < 0.5


def _prometheus_config(path: Path, target: str) -> Path:
    config = path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ollama_server", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}]}))
    return config


def _query(base: str, promql: str) -> dict:
    answer = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=10)
    body = answer.json()
    assert body["status"] == "success", (promql, body)
    return body["data"]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    substitutions = {"$__rate_interval": "1m", "$instance": ".*", "$api": ".*", "$gpu": ".*"}
    out = []
    for expr in exprs:
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        out.append(expr)
    return out


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="the prometheus server is not installed (`make system-deps` as root)")
def test_a_real_prometheus_scrapes_us_and_answers_promql(server, traffic, tmp_path):
    model, _ = traffic
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    target = f"127.0.0.1:{server.port}"
    config = _prometheus_config(tmp_path, target)
    log = open(tmp_path / "prometheus.log", "w")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def ready():
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}: {(tmp_path / 'prometheus.log').read_text()}")
            return requests.get(base + "/-/ready", timeout=2).status_code == 200
        wait_for(ready, "prometheus to be ready")

        def our_counter():
            result = _query(base, "llm_requests_total")["result"]
            ours = [r for r in result if r["metric"].get("api") == "openai" and r["metric"].get("outcome") == "done"]
            return ours or None
        series = wait_for(our_counter, "llm_requests_total in Prometheus")
        print("prometheus: llm_requests_total ->", json.dumps(series))
        (openai,) = series
        labels = openai["metric"]
        assert labels["job"] == "ollama_server" and labels["instance"] == target
        assert labels["endpoint"] == "/v1/chat/completions" and labels["model"] == model
        assert float(openai["value"][1]) == 2.0

        (up,) = _query(base, 'up{job="ollama_server"}')["result"]
        assert up["value"][1] == "1"
        targets = requests.get(base + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        (ours,) = [t for t in targets if t["scrapeUrl"] == f"http://{target}/metrics"]
        assert ours["health"] == "up" and ours["lastError"] == ""
        assert wait_for(lambda: _query(base, "llm_health_score")["result"], "llm_health_score in Prometheus")
        # Every dashboard query is valid PromQL to a real Prometheus (results may be empty: no GPU here).
        for expr in _dashboard_queries():
            _query(base, expr)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()
