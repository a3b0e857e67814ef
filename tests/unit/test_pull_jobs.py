"""Background pulls against a real local HTTP file server: progress while running, success into the store,
errors in the job, validation (SSRF, names) before any thread, the last 20 kept, and the JSON routes."""
from __future__ import annotations

import time

import pytest

from ollama_server.models.pull_jobs import PullJobs
from ollama_server.models.pull_source import PullError
from ollama_server.services import EXTENSION_KEY
from tests.fakes.file_server import SIZE
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes


@pytest.fixture
def server():
    srv = FileServer(gguf_bytes())
    yield srv
    srv.release.set()
    srv.close()


@pytest.fixture
def app(make_app):
    return make_app(allow_private_pull_urls=True)


def pulls_of(app) -> PullJobs:
    return app.extensions[EXTENSION_KEY].pulls


def until(predicate, what: str, deadline_s: float = 30.0):
    """Poll a condition; the deadline only guards against a hang."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_pull_runs_in_the_background_and_lands_in_the_store(app, server):
    pulls = pulls_of(app)
    job = pulls.start(server.url + "/model.gguf", "tiny-pulled:q4")
    assert job["status"] == "running" and job["name"] == "tiny-pulled:q4" and job["finished_at"] is None
    assert pulls.wait(job["id"], timeout=60)
    done = pulls.get(job["id"])
    assert done["status"] == "success" and done["message"] == "success"
    assert done["completed"] == done["total"] == SIZE and done["percent"] == 100.0
    assert done["finished_at"] >= done["started_at"]
    assert app.extensions[EXTENSION_KEY].store.catalogue.get("tiny-pulled:q4") is not None


def test_progress_is_visible_while_the_download_runs(app, server):
    server.stall_after = SIZE // 3
    pulls = pulls_of(app)
    job = pulls.start(server.url + "/model.gguf", "stalled:latest")
    assert server.stalled.wait(30)
    running = until(lambda: (j := pulls.get(job["id"])) and j["completed"] > 0 and j, "some progress")
    assert running["status"] == "running" and running["total"] == SIZE
    assert 0 < running["percent"] < 100 and running["message"].startswith("pulling")
    server.release.set()
    assert pulls.wait(job["id"], timeout=60)
    assert pulls.get(job["id"])["status"] == "success"


def test_a_failed_download_is_an_error_job_with_the_reason(app, server):
    pulls = pulls_of(app)
    job = pulls.start(server.url + "/missing", "missing:latest")
    assert pulls.wait(job["id"], timeout=60)
    failed = pulls.get(job["id"])
    assert failed["status"] == "error" and "404" in failed["message"] and failed["finished_at"] is not None


def test_a_second_pull_of_a_running_source_is_refused(app, server):
    server.stall_after = 1024
    pulls = pulls_of(app)
    job = pulls.start(server.url + "/model.gguf", "first:latest")
    with pytest.raises(PullError) as caught:
        pulls.start(server.url + "/model.gguf", "second:latest")
    assert caught.value.status == 409
    server.release.set()
    assert pulls.wait(job["id"], timeout=60)


def test_validation_errors_are_raised_before_any_thread_starts(make_app, server):
    pulls = pulls_of(make_app())  # private URLs not allowed: the loopback file server is refused
    with pytest.raises(PullError) as caught:
        pulls.start(server.url + "/model.gguf", "tiny:latest")
    assert caught.value.status == 400 and "loopback" in caught.value.message
    with pytest.raises(PullError) as caught:
        pulls.start("ftp://example.com/model.gguf")
    assert caught.value.status == 400
    with pytest.raises(PullError) as caught:
        pulls.start("hf://owner/repo/notes.txt")
    assert caught.value.status == 400 and ".gguf" in caught.value.message
    assert pulls.list() == [] and server.requests == []


def test_only_the_last_twenty_jobs_are_kept_most_recent_first(app):
    small = FileServer(gguf_bytes(64 * 1024))
    try:
        pulls = pulls_of(app)
        ids = []
        for number in range(21):
            job = pulls.start(f"{small.url}/m{number}.gguf", f"small-{number}:latest")
            assert pulls.wait(job["id"], timeout=60)
            ids.append(job["id"])
        listed = [job["id"] for job in pulls.list()]
        assert listed == list(reversed(ids[1:])) and pulls.get(ids[0]) is None
        assert all(job["status"] == "success" for job in pulls.list())
    finally:
        small.close()


def test_the_routes_start_show_and_list_pulls(app, server):
    client = app.test_client()
    response = client.post("/api/dashboard/pulls", json={"source": server.url + "/model.gguf", "name": "routed:q4"})
    assert response.status_code == 202
    job = response.get_json()
    assert job["status"] == "running" and job["source"] == server.url + "/model.gguf"
    assert pulls_of(app).wait(job["id"], timeout=60)
    shown = client.get(f"/api/dashboard/pulls/{job['id']}").get_json()
    assert shown["status"] == "success" and shown["percent"] == 100.0
    assert [j["id"] for j in client.get("/api/dashboard/pulls").get_json()["pulls"]] == [job["id"]]
    assert client.get("/api/dashboard/pulls/pull-999").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({}, "source"),
    ({"source": 5}, "source"),
    ({"source": "not a url"}, "source"),
    ({"source": "http://example.com/model.gguf", "name": 3}, "name"),
    ({"source": "http://example.com/model.gguf", "name": "Bad Name!!"}, "name"),
])
def test_the_route_answers_400_naming_the_field(client, body, field):
    response = client.post("/api/dashboard/pulls", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(f"{field}")


def test_the_route_refuses_a_private_url_with_400(client, server):
    response = client.post("/api/dashboard/pulls", json={"source": server.url + "/model.gguf"})
    assert response.status_code == 400 and "source" in response.get_json()["error"]
    assert server.requests == []
