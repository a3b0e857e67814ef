"""Shared fixtures: an app on a scripted fake back-end, and the real server on the real model."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ollama_server import create_app
from ollama_server.models.default_model import ensure_default_model
from ollama_server.settings import build_settings
from tests.fakes.backend import FakeBackend
from tests.fakes.tiny_gguf import tokenizer_of
from tests.fakes.tiny_gguf import write_tiny_gemma

ROOT = Path(__file__).resolve().parent.parent
# The reliability suites' counts (tests/reliability/counts.py) are printed at the end of every run.
pytest_plugins = ["tests.reliability.summary_plugin"]


@pytest.fixture(scope="session")
def bundled_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M GGUF, assembled once per session."""
    return ensure_default_model(tmp_path_factory.mktemp("bundled"))


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory, bundled_gguf) -> Path:
    """A second real model: Gemma 3 with tiny random weights and the bundled tokenizer (trained context 512)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny-gemma.gguf"
    return write_tiny_gemma(path, tokenizer_of(bundled_gguf), context_length=512)


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def make_app(tmp_path, fake_backend):
    """Build an app over two placeholder model files served by the fake back-end."""
    def build(nvml=None, **overrides):
        models = tmp_path / "models"
        models.mkdir(exist_ok=True)
        (models / "tiny.gguf").write_bytes(b"x" * 10)
        (models / "big.gguf").write_bytes(b"x" * 100)
        # One slot unless a test asks for more: most tests reason about "the" running request.
        settings = build_settings({"models_dir": [str(models)], "data_dir": str(tmp_path / "data"),
                                   "default_context_size": 256, "parallel_slots": 1, **overrides})
        return create_app({"TESTING": True, "SETTINGS": settings, "BACKEND": fake_backend, "NVML": nvml})
    return build


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Child process ids of a process (the gunicorn master's worker, say), from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


class LiveServer:
    """A real `python -m ollama_server` process on a loopback port."""

    def __init__(self, workdir: Path, settings: dict, module: str = "ollama_server"):
        """`module` is what `python -m` runs: a launcher that wraps `ollama_server.__main__.main()`, say."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "service_config.yaml"
        lines = [f"{key}: {value}" for key, value in settings.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.log = open(workdir / "server.log", "w")
        env = {**os.environ, "OLLAMA_SERVER_HOME": str(workdir / "home")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(self.port), "--config", str(self.config)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError("server did not become ready")

    def get_json(self, path: str):
        """GET a path; its JSON body, or None when the answer is not a 200."""
        response = requests.get(self.url + path, timeout=30)
        return response.json() if response.status_code == 200 else None

    def get_text(self, path: str) -> str:
        response = requests.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.text

    def __enter__(self) -> "LiveServer":
        """Wait until ready; a server that never becomes ready is stopped, not leaked."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The real server with the bundled Gemma model, shared by the whole session."""
    workdir = tmp_path_factory.mktemp("live")
    with LiveServer(workdir, {"default_context_size": 1024, "max_request_bytes": 65536,
                              "parallel_slots": 4, "max_queue": 8, "log_level": "INFO"}) as server:
        yield server
