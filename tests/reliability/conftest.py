"""Helpers of the soak and fault tests: real servers, killing one whole, SQLite integrity, the worker's memory."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.conftest import LiveServer
from tests.conftest import children_of
from tests.conftest import free_port
from tests.waiting import wait_for

SQLITE_MAGIC = b"SQLite format 3\0"
MIB = 1024 * 1024
# The access log's status field: `"POST /v1/completions HTTP/1.1" 200 396 ...`.
ACCESS_STATUS = re.compile(r'"[A-Z]+ (\S+) HTTP/1\.[01]" (\d{3}) ')


def worker_pid(server: LiveServer) -> int:
    """The gunicorn worker's pid (the one process holding the model)."""
    return wait_for(lambda: children_of(server.process.pid), "the gunicorn worker to start")[0]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    return psutil.Process(pid).memory_info().rss / MIB


def thread_count(pid: int) -> int:
    """Threads of a process now."""
    return psutil.Process(pid).num_threads()


def kill_whole(server: LiveServer) -> None:
    """SIGKILL the master first (it must not fork a new worker), then its workers; wait until all are gone."""
    workers = children_of(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    server.process.wait(30)
    # A killed child stays a zombie until its parent is reaped; then init reaps it and /proc/<pid> goes.
    wait_for(lambda: all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in workers),
             "the killed worker to be gone")
    server.log.close()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def sqlite_files(*roots: Path) -> list[Path]:
    """Every SQLite database under the roots, found by its header (whatever the file is called)."""
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")):
                with open(path, "rb") as handle:
                    if handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                        found.append(path)
    return found


def integrity(path: Path) -> str:
    """PRAGMA integrity_check of one database (opening it replays its WAL, as the server's next start would)."""
    db = sqlite3.connect(str(path), timeout=30)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)
    finally:
        db.close()


def store_problems(store: Path) -> list[str]:
    """What is inconsistent in a managed store: a manifest naming a missing blob, or a blob whose content
    does not hash to its name."""
    problems = []
    blobs = store / "blobs"
    for manifest in sorted((store / "manifests").rglob("*")) if (store / "manifests").exists() else []:
        if not manifest.is_file():
            continue
        body = json.loads(manifest.read_text())
        for entry in [body.get("config") or {}] + list(body.get("layers") or []):
            digest = str(entry.get("digest", "")).replace("sha256:", "")
            blob = blobs / f"sha256-{digest}"
            if not blob.is_file():
                problems.append(f"{manifest.relative_to(store)} names missing blob {digest[:12]}")
    for blob in sorted(blobs.glob("sha256-*")) if blobs.exists() else []:
        if sha256_of(blob) != blob.name.removeprefix("sha256-"):
            problems.append(f"blob {blob.name[:19]} does not hash to its name")
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def log_size(server: LiveServer) -> int:
    """Bytes in the server's log now: a mark to read what comes after."""
    return Path(server.log.name).stat().st_size


def access_statuses(server: LiveServer, since: int = 0) -> list[tuple[str, int]]:
    """(path, status) of every request in the server's access log after byte `since`."""
    with open(server.log.name, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    return [(path, int(status)) for path, status in ACCESS_STATUS.findall(text)]


def log_lines(server: LiveServer, needle: str) -> list[str]:
    """The server log's lines holding `needle`."""
    return [line for line in Path(server.log.name).read_text(errors="replace").splitlines() if needle in line]


# llama.cpp's worker threads spin while they wait for each other: on a 2-core machine that also runs other
# suites' servers, two of them are oversubscribed and a 6-token reply took 3 s instead of 0.4 s with one.
ONE_THREAD = {"threads": 1}


@pytest.fixture(scope="module")
def soak_server(tmp_path_factory, bundled_gguf) -> Iterator[LiveServer]:
    """One real server for the soak: 4 slots and a queue of 16, so 16 clients at once are never 'busy'."""
    workdir = tmp_path_factory.mktemp("soak")
    settings = {"models_dir": f"[{bundled_gguf.parent}]", "default_context_size": 512, "parallel_slots": 4,
                "max_queue": 16, "metrics_interval": 1.0, "log_level": "INFO", **ONE_THREAD}
    with LiveServer(workdir, settings) as server:
        yield server


# Another process holding the metrics DB's write lock (BEGIN EXCLUSIVE) until a line arrives on its stdin.
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
"""


def newest_sample(db_path: Path) -> float:
    """The newest sample's timestamp in the metrics DB (WAL: read while another process holds the write lock)."""
    db = sqlite3.connect(str(db_path), timeout=5)
    try:
        return db.execute("SELECT COALESCE(MAX(ts), 0) FROM samples").fetchone()[0]
    finally:
        db.close()


class Receiver:
    """A real HTTP webhook receiver on a given loopback port, keeping every JSON body it is sent."""

    def __init__(self, port: int):
        self.bodies: list[dict] = []
        self.arrived = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                owner.bodies.append(json.loads(self.rfile.read(length)))
                owner.arrived.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A rule that fires at the first collection (RAM in use is always above 0 %) and repeats every 2 s, so that a
# delivery is attempted again and again while the receiver is down, and once more when it is back.
FIRING_RULES = """alerts:
  memory_usage:
    warning: 0
    duration: 0
    repeat_interval: 2s
"""


@pytest.fixture(scope="module")
def receiver_port() -> int:
    """A loopback port nothing listens on (yet): the alert webhook's receiver is down."""
    return free_port()


@pytest.fixture(scope="module")
def troubled_server(tmp_path_factory, bundled_gguf, receiver_port) -> Iterator[LiveServer]:
    """One real server with three broken GGUFs beside the good one, a firing alert whose webhook receiver is
    down, and collections every 0.5 s that wait at most 50 ms on a locked metrics DB."""
    workdir = tmp_path_factory.mktemp("troubled")
    models = workdir / "models"
    models.mkdir()
    (models / "good.gguf").symlink_to(bundled_gguf)
    whole = bundled_gguf.read_bytes()
    (models / "truncated.gguf").write_bytes(whole[:len(whole) // 2])  # the header is whole, tensors are not
    (models / "garbage.gguf").write_bytes(os.urandom(4096))  # no GGUF magic at all
    (models / "badheader.gguf").write_bytes(b"GGUF" + b"\xff" * 4096)  # the magic, then nonsense
    rules, channels = workdir / "alerts.yaml", workdir / "alerting.yaml"
    rules.write_text(FIRING_RULES)
    channels.write_text("alerting:\n  webhooks:\n"
                        f"    - url: http://127.0.0.1:{receiver_port}/hook\n      name: down-receiver\n"
                        "      timeout: 2\n")
    settings = {"models_dir": f"[{models}]", "default_context_size": 512, "parallel_slots": 2,
                "metrics_interval": 0.5, "metrics_busy_timeout": 0.05, "alert_rules_file": str(rules),
                "alert_channels_file": str(channels), "log_level": "INFO", **ONE_THREAD}
    with LiveServer(workdir, settings) as server:
        yield server
