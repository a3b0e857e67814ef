"""Ollama listings on the scripted back-end: /api/tags, /api/show and /api/ps from GGUF headers."""
from __future__ import annotations

import re
import struct

import pytest

from tests.unit.ollama_support import RFC3339_Z
from tests.unit.ollama_support import post_raw


# --- discovery -------------------------------------------------------------------------------------


def write_gguf(path, metadata: dict) -> None:
    """A header-only GGUF v3 (no tensors) with string, uint32 and string-array values."""
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        out += string(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + string(value)
        elif isinstance(value, list):
            out += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(string(v) for v in value)
        else:
            out += struct.pack("<II", 4, value)
    path.write_bytes(out)


@pytest.fixture
def gguf_client(make_app, tmp_path):
    (tmp_path / "models").mkdir()
    write_gguf(tmp_path / "models" / "llamaish.gguf", {
        "general.architecture": "llama", "general.file_type": 15, "general.size_label": "1B",
        "llama.context_length": 2048, "tokenizer.ggml.tokens": ["a", "b", "c"],
        "tokenizer.chat_template": "{{ messages }}"})
    return make_app().test_client()


def test_tags_lists_every_model_with_ollamas_fields(gguf_client):
    models = gguf_client.get("/api/tags").get_json()["models"]
    assert [m["name"] for m in models] == ["big:latest", "llamaish:latest", "tiny:latest"]
    for entry in models:
        assert set(entry) - {"error"} == {"name", "model", "modified_at", "size", "digest", "details"}
        assert entry["model"] == entry["name"]
        assert RFC3339_Z.match(entry["modified_at"])
        assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
        assert entry["details"]["format"] == "gguf" and entry["details"]["parent_model"] == ""
    tiny = models[2]
    assert tiny["size"] == 10 and tiny["details"]["family"] == ""  # unparseable header: still listed,
    assert "too small" in tiny["error"] and "error" not in models[1]  # with the reason


def test_tags_details_come_from_the_gguf_header(gguf_client):
    llamaish = gguf_client.get("/api/tags").get_json()["models"][1]
    assert llamaish["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                   "parameter_size": "1B", "quantization_level": "Q4_K_M"}


def test_api_models_is_an_alias_of_tags(client):
    assert client.get("/api/models").get_json() == client.get("/api/tags").get_json()
    assert client.head("/api/tags").status_code == 200


def test_show_gives_model_info_from_the_header(gguf_client):
    body = gguf_client.post("/api/show", json={"model": "llamaish"}).get_json()
    info = body["model_info"]
    assert info["general.architecture"] == "llama" and info["llama.context_length"] == 2048
    assert info["tokenizer.ggml.tokens"] == []  # arrays only in verbose mode
    assert "ollama_server.runtime_context_length" not in info  # not loaded
    assert body["capabilities"] == ["completion"] and body["template"] == "{{ messages }}"
    assert body["details"]["quantization_level"] == "Q4_K_M" and "FROM " in body["modelfile"]
    assert RFC3339_Z.match(body["modified_at"])
    verbose = gguf_client.post("/api/show", json={"model": "llamaish", "verbose": True}).get_json()
    assert verbose["model_info"]["tokenizer.ggml.tokens"] == ["a", "b", "c"]


def test_show_adds_the_runtime_context_of_a_loaded_model(client):
    client.post("/api/generate", json={"model": "tiny"})
    body = client.post("/api/show", json={"name": "tiny"}).get_json()  # legacy "name"
    assert body["model_info"]["ollama_server.runtime_context_length"] == 256
    assert body["model_info"]["fake.context_length"] == 256


@pytest.mark.parametrize("payload,status", [({"model": "nope"}, 404), ({}, 400), (b"", 400)])
def test_show_errors(client, payload, status):
    response = post_raw(client, "/api/show", payload)
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}


def test_ps_lists_loaded_models_with_runtime_context(client, fake_backend):
    assert client.get("/api/ps").get_json() == {"models": []}
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    (entry,) = client.get("/api/ps").get_json()["models"]
    assert entry["name"] == entry["model"] == "tiny:latest"
    assert entry["context_length"] == 256 and entry["size_vram"] == 0 and entry["size"] == 10
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram",
                          "context_length"}


# --- errors ----------------------------------------------------------------------------------------


def test_with_inspection_off_listings_read_no_headers(make_app):
    client = make_app(enable_model_inspection=False).test_client()
    models = client.get("/api/tags").get_json()["models"]
    assert models and all("error" not in m for m in models)
    assert all(m["details"]["family"] == "" for m in models)


def test_with_inspection_on_an_unreadable_file_is_listed_with_its_error(client):
    models = client.get("/api/tags").get_json()["models"]
    assert models and all(m.get("error") for m in models)  # the placeholders are not GGUF files
