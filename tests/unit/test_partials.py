"""Abandoned pulls' partial downloads expire after partial_download_max_age, unless a pull holds them."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from ollama_server import services as services_module
from ollama_server.models.partials import expire_partials
from ollama_server.services import EXTENSION_KEY

from tests.fakes.file_server import SIZE
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes

NOW = 1_700_000_000.0
DAY = 86400.0


def partial(blobs: Path, name: str, age: float, now: float = NOW, meta: bool = True) -> Path:
    """A partial download (and its validator) last written `age` seconds before `now`."""
    blobs.mkdir(parents=True, exist_ok=True)
    path = blobs / f"partial-{name}.partial"
    path.write_bytes(b"GGUF" + b"x" * 100)
    os.utime(path, (now - age, now - age))
    if meta:
        validator = path.with_suffix(".json")
        validator.write_text(json.dumps({"url": f"https://example.com/{name}.gguf", "validator": '"v1"'}))
        os.utime(validator, (now - age, now - age))
    return path


def names(blobs: Path) -> list[str]:
    return sorted(p.name for p in blobs.iterdir())


def test_it_deletes_partials_older_than_max_age_with_their_validator(tmp_path):
    """Old partials and their .json go; young ones stay for a resume."""
    blobs = tmp_path / "blobs"
    old = partial(blobs, "old", age=DAY + 1)
    partial(blobs, "young", age=DAY - 60)
    removed = expire_partials(blobs, DAY, now=lambda: NOW)
    assert sorted(removed) == sorted([old, old.with_suffix(".json")])
    assert names(blobs) == ["partial-young.json", "partial-young.partial"]


def test_it_goes_by_the_partials_mtime_not_the_validators(tmp_path):
    """A resumed pull appends to the partial; its fresh mtime keeps it even if the .json is old."""
    blobs = tmp_path / "blobs"
    kept = partial(blobs, "resumed", age=2 * DAY)
    os.utime(kept, (NOW - 10, NOW - 10))
    assert expire_partials(blobs, DAY, now=lambda: NOW) == []
    assert names(blobs) == ["partial-resumed.json", "partial-resumed.partial"]


def test_it_skips_a_partial_that_a_running_pull_holds_locked(tmp_path):
    """An old partial whose flock is held (a stalled but live pull) is left alone."""
    blobs = tmp_path / "blobs"
    held_path = partial(blobs, "held", age=10 * DAY)
    free = partial(blobs, "free", age=10 * DAY)
    with open(held_path, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # what pull._lock takes
        removed = expire_partials(blobs, DAY, now=lambda: NOW)
        assert held_path.exists() and held_path.with_suffix(".json").exists()
    assert sorted(removed) == sorted([free, free.with_suffix(".json")])
    # Once the pull lets go, the next sweep may delete it.
    assert held_path in expire_partials(blobs, DAY, now=lambda: NOW)


def test_max_age_zero_deletes_every_partial_no_pull_holds(tmp_path):
    """0 is 'delete as soon as no pull holds them', even one written this very second."""
    blobs = tmp_path / "blobs"
    just_written = partial(blobs, "now", age=0)
    held_path = partial(blobs, "held", age=0)
    with open(held_path, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        removed = expire_partials(blobs, 0, now=lambda: NOW)
    assert sorted(removed) == sorted([just_written, just_written.with_suffix(".json")])
    assert names(blobs) == ["partial-held.json", "partial-held.partial"]


def test_it_never_touches_blobs_or_other_files(tmp_path):
    """Only partial-*.partial and partial-*.json are candidates, however old the rest is."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    others = [blobs / ("sha256-" + "a" * 64), blobs / "notes.partial", blobs / "partial-x.tmp",
              blobs / "sha256-abc.json"]
    for path in others:
        path.write_bytes(b"data")
        os.utime(path, (NOW - 100 * DAY, NOW - 100 * DAY))
    assert expire_partials(blobs, DAY, now=lambda: NOW) == []
    assert all(path.exists() for path in others)


def test_it_deletes_an_old_validator_left_without_its_partial(tmp_path):
    """A lone .json belongs to no pull (pulls create the partial first): an old one goes, a young one stays."""
    blobs = tmp_path / "blobs"
    partial(blobs, "gone", age=2 * DAY).unlink()
    partial(blobs, "recent", age=60).unlink()
    assert expire_partials(blobs, DAY, now=lambda: NOW) == [blobs / "partial-gone.json"]
    assert names(blobs) == ["partial-recent.json"]


def test_a_missing_blobs_directory_is_nothing_to_do(tmp_path):
    """A store that never pulled anything has no blobs directory."""
    assert expire_partials(tmp_path / "nope", DAY, now=lambda: NOW) == []


def test_it_reads_the_clock_once_through_the_injected_now(tmp_path):
    """`now` is injectable (time.time by default), so expiry is testable without waiting a day."""
    blobs = tmp_path / "blobs"
    path = partial(blobs, "a", age=100)
    assert expire_partials(blobs, 200, now=lambda: NOW) == []
    assert path in expire_partials(blobs, 200, now=lambda: NOW + 100)


# --- when it runs ---------------------------------------------------------------------------------
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blobs_of(app) -> Path:
    return app.extensions[EXTENSION_KEY].store.managed.root / "blobs"


@pytest.fixture
def server():
    srv = FileServer(gguf_bytes())
    yield srv
    srv.close()


def test_a_pull_first_deletes_abandoned_partials_of_the_store(make_app, server):
    """Before a pull starts, partials older than the default max age (a day) are deleted; held ones stay."""
    app = make_app(allow_private_pull_urls=True)
    blobs = blobs_of(app)
    now = time.time()
    abandoned = partial(blobs, "abandoned", age=2 * DAY, now=now)
    recent = partial(blobs, "recent", age=60, now=now)
    held_path = partial(blobs, "held", age=2 * DAY, now=now)
    with open(held_path, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        response = app.test_client().post("/api/pull", json={"model": "fresh", "source": server.url + "/m.gguf",
                                                             "stream": False})
    assert response.status_code == 200
    assert not abandoned.exists() and not abandoned.with_suffix(".json").exists()
    assert recent.exists() and held_path.exists()
    assert (blobs / f"sha256-{sha(server.data)}").stat().st_size == SIZE


def test_an_expired_partial_of_the_same_source_is_started_over_not_resumed(tmp_path, server):
    """The pull's own stale partial is deleted first, so the download starts from byte 0."""
    from ollama_server.models import pull as pulling
    from ollama_server.models.managed_store import ManagedStore
    from ollama_server.models.pull_source import plan

    url = server.url + "/m.gguf"
    store = tmp_path / "store"
    stale = partial(store / "blobs", sha(url.encode()), age=2 * 3600, now=time.time())
    stale.write_bytes(server.data[:1000])
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    events = list(pulling.pull(plan("m", url, None), ManagedStore(store), allow_private=True, partial_max_age=3600))
    assert events[-1] == {"status": "success"}
    assert [headers.get("Range") for _, headers in server.requests] == [None]  # no resume asked


def test_the_scheduler_runs_the_expiry_every_five_minutes_once_started(make_app):
    """The expiry is an APScheduler interval job of PARTIAL_EXPIRY_INTERVAL_S, one instance at a time."""
    svc = make_app(partial_download_max_age=3600).extensions[EXTENSION_KEY]
    svc.start(warm=False)
    try:
        job = svc.scheduler.get_job("partial-expiry")
        assert job.trigger.interval.total_seconds() == services_module.PARTIAL_EXPIRY_INTERVAL_S == 300.0
        assert job.max_instances == 1 and job.coalesce is True
    finally:
        svc.close()


def test_a_failing_expiry_is_logged_and_the_loop_goes_on(make_app, monkeypatch, caplog):
    """Housekeeping must not kill the scheduler's job."""
    svc = make_app().extensions[EXTENSION_KEY]

    def broken(*args, **kwargs):
        raise PermissionError("blobs not readable")
    monkeypatch.setattr(services_module, "expire_partials", broken)
    svc._expire_partials()
    assert "partial download expiry failed" in caplog.text


def test_the_background_loop_expires_partials_once_at_start(make_app):
    """Starting the services sweeps the store without waiting five minutes."""
    app = make_app(partial_download_max_age=3600)
    svc = app.extensions[EXTENSION_KEY]
    old = partial(blobs_of(app), "old", age=7200, now=time.time())
    svc.start(warm=False)
    try:
        deadline = time.monotonic() + 10
        while old.exists() and time.monotonic() < deadline:  # the loop runs in its own thread
            time.sleep(0.01)
        assert not old.exists()
    finally:
        svc.close()
