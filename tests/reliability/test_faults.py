"""Faults on real servers, each checked for the integrity of what it leaves behind: SIGKILL during an eval job
and during a pull, broken GGUFs in the models dir, the metrics DB locked by another process, the webhook
receiver down while an alert fires; and, at unit speed, the status of a failed load of a broken file."""
from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import requests

from ollama_server.client import Client
from tests.conftest import ROOT
from tests.conftest import LiveServer
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes
from tests.reliability import counts
from tests.reliability.conftest import HOLDER
from tests.reliability.conftest import ONE_THREAD
from tests.reliability.conftest import Receiver
from tests.reliability.conftest import integrity
from tests.reliability.conftest import kill_whole
from tests.reliability.conftest import log_lines
from tests.reliability.conftest import newest_sample
from tests.reliability.conftest import sha256_of
from tests.reliability.conftest import sqlite_files
from tests.reliability.conftest import store_problems
from tests.reliability.conftest import thread_count
from tests.reliability.conftest import worker_pid
from tests.waiting import wait_for

pytestmark = pytest.mark.model

SCENARIOS = ("kill_during_eval", "kill_during_pull", "corrupt_gguf", "metrics_db_locked", "webhook_down")
DATASET = ROOT / "tests" / "data" / "math_eval.jsonl"
EVAL_SAMPLES = 4
_passed: set[str] = set()


def passed(scenario: str, **numbers: float) -> None:
    """Record one scenario's numbers and the running total of scenarios that passed."""
    _passed.add(scenario)
    counts.record(f"faults.{scenario}", passed=1, **numbers)
    counts.record("faults", scenarios=len(SCENARIOS), passed=len(_passed))


def every_db_is_intact(*roots: Path) -> list[Path]:
    """Every SQLite file under the roots, after asserting each passes PRAGMA integrity_check."""
    found = sqlite_files(*roots)
    assert found, f"no SQLite file under {roots}"
    checks = {path.name: integrity(path) for path in found}
    assert set(checks.values()) == {"ok"}, checks
    return found


def the_model(url: str) -> str:
    return requests.get(url + "/v1/models", timeout=30).json()["data"][0]["id"]


# --- SIGKILL ----------------------------------------------------------------------------------------
def test_a_server_killed_during_an_eval_job_leaves_intact_databases_and_the_job_finishes(tmp_path, bundled_gguf):
    base = tmp_path / "base"
    (base / "datasets").mkdir(parents=True)
    shutil.copy(DATASET, base / "datasets" / DATASET.name)
    settings = {"base_dir": str(base), "data_dir": str(tmp_path / "data"), "models_dir": f"[{bundled_gguf.parent}]",
                "default_context_size": 512, "parallel_slots": 2, "metrics_interval": 0.5, "log_level": "INFO",
                **ONE_THREAD}
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    server = LiveServer(first, settings)
    with server:
        client = Client(server.url)
        job_id = client.eval_job(the_model(server.url), "killed_eval", DATASET.name, metrics=["accuracy"],
                                 max_samples=EVAL_SAMPLES, max_new_tokens=16)["job_id"]
        wait_for(lambda: client.get_job(job_id)["progress"]["done"] >= 1, "one example done", limit_s=300)
        # An interactive stream is decoding beside the job when the kill comes: its record is being written too.
        stream = requests.post(server.url + "/v1/completions", stream=True, timeout=60, json={
            "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True, "stream": True})
        lines = stream.iter_lines()  # kept: a temporary one, once collected, would close the stream before the kill
        next(line for line in lines if line.startswith(b"data: {"))
        kill_whole(server)
        stream.close()
    databases = every_db_is_intact(tmp_path / "data", base)
    assert {"db.sqlite", "metrics.db"} <= {path.name for path in databases}
    with closing(sqlite3.connect(base / "db.sqlite")) as db:
        status, done_before = db.execute("SELECT status, progress_done FROM jobs WHERE id = ?", (job_id,)).fetchone()
    assert status == "running" and 1 <= done_before < EVAL_SAMPLES  # interrupted, as the row says

    with LiveServer(second, settings) as restarted:
        client = Client(restarted.url)
        job = client.wait_for_job(job_id, poll_interval=0.2, timeout=600)
        assert job["status"] == "done", job["error"]
        assert job["attempts"] == 2
        health = requests.get(restarted.url + "/health", timeout=30).json()
        assert health["status"] == "ok" and health["components"]["metrics"]["store"]["state"] == "ok"
    run = base / "runs" / "eval" / job_id
    indexes = [json.loads(line)["index"] for line in (run / "samples.jsonl").read_text().splitlines()]
    assert indexes == list(range(EVAL_SAMPLES))  # one line per example: none lost, none twice
    assert json.loads((run / "metrics.json").read_text())["total_samples"] == EVAL_SAMPLES
    every_db_is_intact(tmp_path / "data", base)
    passed("kill_during_eval", databases=len(databases), examples_before_kill=done_before)


def test_a_server_killed_during_a_pull_lists_no_partial_model_and_the_pull_completes(tmp_path, bundled_gguf):
    data = gguf_bytes()
    source = FileServer(data)
    source.stall_after = len(data) // 2
    settings = {"models_dir": f"[{bundled_gguf.parent}]", "default_context_size": 512,
                "allow_private_pull_urls": "true", **ONE_THREAD}
    store = tmp_path / "home" / "store"
    body = {"model": "halfway:latest", "source": source.url + "/model.gguf"}
    try:
        server = LiveServer(tmp_path, settings)
        with server:
            pulling = requests.post(server.url + "/api/pull", stream=True, timeout=60, json=body)
            next(pulling.iter_lines())
            wait_for(source.stalled.is_set, "the download to reach its middle")
            partial = wait_for(lambda: next(iter(store.glob("blobs/partial-*.partial")), None), "a partial file")
            wait_for(lambda: partial.stat().st_size >= len(data) // 2, "half the file on disk")
            kill_whole(server)
            pulling.close()
        source.stall_after = None
        source.release.set()
        # What the kill left: a partial (kept for resuming), no manifest, no blob named by a digest.
        assert not [p for p in store.rglob("*") if p.is_file() and "manifests" in p.parts]
        assert not list(store.glob("blobs/sha256-*"))
        assert store_problems(store) == []
        every_db_is_intact(tmp_path / "home")

        with LiveServer(tmp_path, settings) as again:
            tags = requests.get(again.url + "/api/tags", timeout=30).json()["models"]
            assert "halfway:latest" not in [m["name"] for m in tags]
            listed = requests.post(again.url + "/api/show", json={"model": "halfway:latest"}, timeout=30)
            assert listed.status_code == 404
            done = requests.post(again.url + "/api/pull", timeout=120, json={**body, "stream": False})
            assert done.status_code == 200 and done.json() == {"status": "success"}
            resumed_from = [headers.get("Range") for path, headers in source.requests][-1]
            tags = {m["name"]: m for m in requests.get(again.url + "/api/tags", timeout=30).json()["models"]}
        expected = hashlib.sha256(data).hexdigest()
        assert "halfway:latest" in tags
        [manifest] = [p for p in store.rglob("*") if p.is_file() and "manifests" in p.parts]
        layers = json.loads(manifest.read_text())["layers"]
        model_layer = [layer for layer in layers if layer["mediaType"].endswith(".model")]
        assert model_layer == [{**model_layer[0], "digest": f"sha256:{expected}", "size": len(data)}]
        assert sha256_of(store / "blobs" / f"sha256-{expected}") == expected  # the whole file, byte for byte
        assert store_problems(store) == [] and not list(store.glob("blobs/partial-*"))
        every_db_is_intact(tmp_path / "home")
        resumed_at = int(resumed_from.removeprefix("bytes=").rstrip("-")) if resumed_from else 0
        assert resumed_at >= len(data) // 2  # the redo resumed from the partial, it did not start over
        passed("kill_during_pull", bytes_before_kill=resumed_at, bytes_total=len(data))
    finally:
        source.release.set()
        source.close()


# --- one troubled server: broken GGUFs, a metrics DB locked from outside, a webhook receiver down ---------
BROKEN = {"truncated:latest": "truncated", "garbage:latest": "bad magic", "badheader:latest": "unsupported GGUF"}


def test_broken_ggufs_are_reported_by_health_and_refused_with_a_4xx_naming_the_model(troubled_server):
    url = troubled_server.url
    health = requests.get(url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    broken = {m["name"]: m["error"] for m in health.json()["components"]["models"]["broken"]}
    assert set(broken) == set(BROKEN)
    assert all(words in broken[name] for name, words in BROKEN.items()), broken
    assert all(any(name in problem for problem in health.json()["problems"]) for name in BROKEN)
    names = [m["name"] for m in requests.get(url + "/api/tags", timeout=30).json()["models"]]
    assert "good:latest" in names

    answers = []
    for name in list(BROKEN) * 2:  # twice: the second answer comes from the failed-load cooldown
        calls = {
            "ollama": requests.post(url + "/api/generate", timeout=60, json={
                "model": name, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}),
            "openai": requests.post(url + "/v1/chat/completions", timeout=60, json={
                "model": name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
            "vllm": requests.post(url + "/v1/completions", timeout=60, json={
                "model": name, "prompt": "Hi", "max_tokens": 2}),
            "tgi": requests.post(url + "/generate", timeout=60, json={
                "model": name, "inputs": "Hi", "parameters": {"max_new_tokens": 2}}),
        }
        for dialect, answer in calls.items():
            answers.append((name, dialect, answer.status_code))
            assert 400 <= answer.status_code < 500, (name, dialect, answer.status_code, answer.text[:300])
            assert "its file is broken" in answer.text and BROKEN[name] in answer.text, answer.text[:300]
        assert calls["openai"].json()["error"]["param"] == "model"
    good = requests.post(url + "/api/generate", timeout=60, json={
        "model": "good", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert good.status_code == 200 and good.json()["done"]
    unnamed = requests.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert unnamed.status_code == 200 and unnamed.json()["model"] == "good:latest"  # never a broken default
    passed("corrupt_gguf", broken_files=len(BROKEN), refused_4xx=len(answers))


def test_a_failed_load_of_a_file_found_broken_is_a_400_while_another_model_is_usable(make_app, fake_backend,
                                                                                      tmp_path, tiny_gemma):
    (tmp_path / "models").mkdir()
    shutil.copy(tiny_gemma, tmp_path / "models" / "real.gguf")  # beside make_app's two placeholder files
    http = make_app().test_client()
    fake_backend.load_error = RuntimeError("llama.cpp could not read it")
    for _ in range(2):  # the second answer comes from the cooldown
        answer = http.post("/v1/completions", json={"model": "big", "prompt": "Hi", "max_tokens": 1})
        assert answer.status_code == 400
        error = answer.get_json()["error"]
        assert error["param"] == "model" and error["code"] == "model_file_broken"
        assert error["message"].startswith("model 'big:latest' cannot be loaded: its file is broken (")


def test_a_failed_load_stays_the_servers_error_when_no_model_passes_inspection(make_app, fake_backend):
    http = make_app().test_client()  # only placeholder files: the inspector may be what is wrong
    fake_backend.load_error = RuntimeError("out of memory")
    answer = http.post("/v1/completions", json={"model": "big", "prompt": "Hi", "max_tokens": 1})
    assert answer.status_code == 500 and "failed to load model 'big:latest': out of memory" in answer.text


def metrics_store(url: str) -> dict:
    return requests.get(url + "/health", timeout=30).json()["components"]["metrics"]["store"]


def test_a_metrics_db_locked_by_another_process_leaves_requests_working_and_collection_resumes(troubled_server):
    url = troubled_server.url
    db_path = Path(troubled_server.config).parent / "home" / "metrics.db"
    wait_for(lambda: newest_sample(db_path) if db_path.exists() else 0, "a first collection in the metrics DB")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        locked = wait_for(lambda: (s := metrics_store(url))["state"] == "locked" and s, "/health to say locked")
        assert locked["last_error_detail"] and "locked" in locked["last_error_detail"].lower()
        before = newest_sample(db_path)
        model = "good:latest"  # /v1/models lists the broken ones too
        answers = [
            requests.post(url + "/v1/completions", json={"model": model, "prompt": "Hi", "max_tokens": 3}, timeout=60),
            requests.post(url + "/api/chat", timeout=60, json={
                "model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
                "options": {"num_predict": 3}}),
            requests.post(url + "/generate", json={"inputs": "Hi", "parameters": {"max_new_tokens": 3}}, timeout=60),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:200] for a in answers]
        reads = {path: requests.get(url + path, timeout=30) for path in
                 ("/health", "/api/metrics/dashboard", "/api/metrics/apis", "/api/alerts", "/metrics", "/system")}
        assert {path: r.status_code for path, r in reads.items()} == dict.fromkeys(reads, 200)
        assert reads["/health"].json()["components"]["metrics"]["status"] == "locked"
        wait_for(lambda: log_lines(troubled_server, "metrics store: locked"), "the lock to be logged")
        assert newest_sample(db_path) == before  # nothing was written while the lock was held
    finally:
        holder.communicate("release\n", timeout=30)
    assert holder.returncode == 0
    wait_for(lambda: metrics_store(url)["state"] == "ok", "/health to say ok again")
    wait_for(lambda: newest_sample(db_path) > before, "new samples after the lock is released")
    assert integrity(db_path) == "ok"
    passed("metrics_db_locked", requests_while_locked=len(answers), reads_while_locked=len(reads))


def test_a_webhook_receiver_that_is_down_costs_no_request_and_no_thread_and_later_notifications_arrive(
        troubled_server, receiver_port):
    url = troubled_server.url
    failed = "alert memory_usage to down-receiver failed"
    first = wait_for(lambda: log_lines(troubled_server, failed), "a failed delivery to be logged", limit_s=120)
    assert "ConnectionError" in first[0] and "gave up after" in first[0]
    pid = worker_pid(troubled_server)
    threads_before, failures_before = thread_count(pid), len(first)
    model = "good:latest"  # /v1/models lists the broken ones too
    for _ in range(3):
        answer = requests.post(url + "/v1/chat/completions", timeout=60, json={
            "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
        assert answer.status_code == 200
    alerts = requests.get(url + "/api/alerts", timeout=30).json()
    assert "memory_usage" in {event["alert"] for event in alerts["active"]}  # recorded though undelivered
    later = wait_for(lambda: len(lines := log_lines(troubled_server, failed)) >= failures_before + 2 and lines,
                     "two more failed deliveries", limit_s=120)
    threads_after = thread_count(pid)
    # Deliveries wait on the channel's one queue thread: failures add deliveries, never threads.
    assert threads_after - threads_before < len(later) - failures_before, (threads_before, threads_after)

    receiver = Receiver(receiver_port)
    try:
        wait_for(receiver.arrived.is_set, "a notification at the receiver once it is up", limit_s=120)
        firing = [alert for body in receiver.bodies for alert in body["alerts"]
                  if alert["labels"].get("alertname") == "memory_usage"]
        assert firing and firing[0]["status"] == "firing"
    finally:
        receiver.close()
    passed("webhook_down", failed_deliveries=len(later), threads_added=threads_after - threads_before,
           delivered_after=len(receiver.bodies))
