"""The hostile probe's smaller findings, through the real server and model: each answered as the dialect
expects, and a pull killed mid-download leaves no model behind but a partial that resumes."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import LiveServer
from tests.conftest import children_of
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes

pytestmark = pytest.mark.model


def wait_until(condition, seconds: float = 60, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} never held"
        time.sleep(0.05)
    return value


def test_an_empty_prompt_list_is_a_400_not_a_500(live_server):
    response = requests.post(live_server.url + "/v1/completions", json={"prompt": [], "max_tokens": 2}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


def test_a_negative_num_predict_other_than_minus_one_or_two_is_a_400(live_server):
    response = requests.post(live_server.url + "/api/generate", timeout=30, json={
        "model": "gemma3:270m", "prompt": "x", "stream": False, "options": {"num_predict": -5}})
    assert response.status_code == 400 and "num_predict" in response.json()["error"]


def test_a_dismissed_stream_says_it_was_aborted(live_server):
    body = {"prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True, "stream": True}
    with requests.post(live_server.url + "/v1/completions", json=body, stream=True, timeout=60,
                       headers={"X-Request-Id": "probe-dismiss"}) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith(b"data: {"))
        assert requests.post(live_server.url + "/api/dismiss/probe-dismiss", timeout=10).json()["cancelled"]
        events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: {")]
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["abort"]


def test_an_old_partial_download_is_deleted_at_the_next_pull_and_a_recent_one_kept(live_server):
    blobs = Path(live_server.config).parent / "home" / "store" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    old, recent = blobs / "partial-old.partial", blobs / "partial-new.partial"
    for path in (old, recent, blobs / "partial-old.json"):
        path.write_bytes(b"GGUF" + b"\0" * 100)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    # Any pull first expires abandoned partials, even one that is then refused (a private address here).
    refused = requests.post(live_server.url + "/api/pull", json={"model": "http://127.0.0.1:9/x.gguf"}, timeout=30)
    assert refused.status_code == 400
    assert not old.exists() and not (blobs / "partial-old.json").exists()
    assert recent.exists()


def test_a_pull_killed_mid_download_leaves_no_model_and_resumes_after_restart(tmp_path):
    data = gguf_bytes()
    source = FileServer(data)
    source.stall_after = len(data) // 2
    settings = {"default_context_size": 512, "allow_private_pull_urls": "true"}
    blobs = tmp_path / "home" / "store" / "blobs"
    try:
        server = LiveServer(tmp_path, settings)
        with server:
            pulling = requests.post(server.url + "/api/pull", stream=True, timeout=60,
                                    json={"model": "killed:latest", "source": source.url + "/model.gguf"})
            lines = pulling.iter_lines()
            next(lines)
            wait_until(source.stalled.is_set, what="the download to reach its middle")
            partial = wait_until(lambda: next(iter(blobs.glob("partial-*.partial")), None), what="a partial file")
            wait_until(lambda: partial.stat().st_size >= len(data) // 2, what="half the file on disk")
            for pid in children_of(server.process.pid) + [server.process.pid]:
                os.kill(pid, signal.SIGKILL)  # the whole service dies at once, worker and master
            server.process.wait(30)
        source.stall_after = None
        source.release.set()
        assert not list((tmp_path / "home" / "store").glob("manifests/**/killed*"))
        assert [p.name for p in blobs.iterdir() if p.name.startswith("sha256-")] == []
        with LiveServer(tmp_path, settings) as again:
            names = [m["name"] for m in requests.get(again.url + "/api/tags", timeout=30).json()["models"]]
            assert "killed:latest" not in names
            done = requests.post(again.url + "/api/pull", timeout=120, json={
                "model": "killed:latest", "source": source.url + "/model.gguf", "stream": False})
            assert done.status_code == 200 and done.json() == {"status": "success"}
            resumed = [headers.get("Range") for path, headers in source.requests][-1]
            assert resumed and resumed.startswith("bytes=") and resumed != "bytes=0-"
            names = [m["name"] for m in requests.get(again.url + "/api/tags", timeout=30).json()["models"]]
            assert "killed:latest" in names
    finally:
        source.release.set()
        source.close()
