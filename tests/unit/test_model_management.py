"""Model management over HTTP on the scripted back-end: listings, delete, copy, registry routes, path safety."""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from ollama_server import create_app
from ollama_server.services import EXTENSION_KEY
from ollama_server.settings import build_settings
from tests.fakes import ollama_layout as layout
from tests.fakes.tiny_gguf import write_header_model


class Env:
    """Two read-only sources (models_dir, an external Ollama store), the managed store, and files outside."""

    def __init__(self, root: Path, backend):
        self.root = root
        self.models = root / "models"
        self.external = root / "ollama"
        self.data = root / "data"
        self.managed = self.data / "store"
        self.outside = root / "outside"
        for folder in (self.models, self.outside, root / "src"):
            folder.mkdir(parents=True)
        write_header_model(self.models / "dir-model.gguf", context_length=128)
        self.ext_gguf = write_header_model(root / "src" / "ext.gguf", arch="qwen3", context_length=8192,
                                           metadata={"tokenizer.chat_template": "<think>{{ tools }}"})
        layout.add_model(self.external, layout.library("ext"), self.ext_gguf, system="From the store.")
        self.managed_gguf = write_header_model(root / "src" / "managed.gguf", blocks=3)
        self.managed_manifest = layout.add_model(self.managed, layout.library("managed"), self.managed_gguf,
                                                 params={"temperature": 0.1})
        self.secret = write_header_model(self.outside / "secret.gguf")
        (self.outside / "canary.txt").write_text("do not touch")
        self.broken = self.models / "broken.gguf"
        # A header that promises one key of 100 bytes and stops after 3 of them.
        self.broken.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 100) + b"gen")
        self.backend = backend

    def app(self, **overrides):
        settings = build_settings({"models_dir": [str(self.models)], "manifests_dir": str(self.external),
                                   "data_dir": str(self.data), "default_context_size": 256, **overrides})
        return create_app({"TESTING": True, "SETTINGS": settings, "BACKEND": self.backend})

    def snapshot(self) -> dict:
        """Every file under the test root with its size, mtime and inode."""
        found = {}
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = Path(folder, name)
                stat = path.lstat()
                found[str(path.relative_to(self.root))] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        return found


@pytest.fixture
def env(tmp_path, fake_backend) -> Env:
    return Env(tmp_path, fake_backend)


@pytest.fixture
def client(env):
    return env.app().test_client()


def names_in(client) -> dict:
    return {m["name"]: m for m in client.get("/api/tags").get_json()["models"]}


def services_of(client):
    return client.application.extensions[EXTENSION_KEY]


# --- listings ----------------------------------------------------------------------------------------
def test_tags_merge_every_source_and_list_a_corrupt_file_with_its_error(client, env):
    response = client.get("/api/tags")
    assert response.status_code == 200
    models = names_in(client)
    assert sorted(models) == ["broken:latest", "dir-model:latest", "ext:latest", "managed:latest"]
    assert "error" in models["broken:latest"] and "truncated" in models["broken:latest"]["error"]
    assert all("error" not in m for name, m in models.items() if name != "broken:latest")
    manifest = env.external / "manifests/registry.ollama.ai/library/ext/latest"
    assert models["ext:latest"]["digest"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert models["ext:latest"]["details"]["family"] == "qwen3"


def test_a_model_dropped_into_a_source_is_listed_without_a_restart(client, env):
    write_header_model(env.models / "later.gguf")
    assert "later:latest" in names_in(client)


def test_show_reports_store_layers_capabilities_and_the_trained_context(client):
    body = client.post("/api/show", json={"model": "ext"}).get_json()
    assert body["system"] == "From the store."
    assert body["model_info"]["qwen3.context_length"] == 8192
    assert body["capabilities"] == ["completion", "thinking", "tools"]  # its template takes tools
    managed = client.post("/api/show", json={"model": "managed"}).get_json()
    assert "temperature" in managed["parameters"]


def test_the_context_window_is_the_configured_size_capped_by_the_trained_one(client):
    cards = {c["id"]: c for c in client.get("/v1/models").get_json()["data"]}
    assert cards["dir-model:latest"]["max_model_len"] == 128  # trained 128 < configured 256
    assert cards["ext:latest"]["max_model_len"] == 256
    client.post("/api/generate", json={"model": "dir-model"})
    (loaded,) = client.get("/api/ps").get_json()["models"]
    assert loaded["context_length"] == 128


def test_registry_listing_shows_source_path_size_and_inspection(client, env):
    body = client.get("/models").get_json()
    models = {m["name"]: m for m in body["models"]}
    assert models["ext:latest"]["source"] == "ollama" and models["ext:latest"]["read_only"] is True
    assert models["managed:latest"]["source"] == "store" and models["managed:latest"]["read_only"] is False
    assert models["dir-model:latest"]["path"] == str(env.models / "dir-model.gguf")
    assert models["managed:latest"]["inspection"]["block_count"] == 3
    assert models["ext:latest"]["inspection"]["capabilities"] == ["completion", "thinking", "tools"]
    assert "error" in models["broken:latest"]["inspection"]
    assert body["active"] == "dir-model:latest"  # the smallest file when none is set, never a broken one


# --- delete ------------------------------------------------------------------------------------------
def test_delete_removes_the_manifest_and_its_unshared_blobs(client, env):
    blobs_before = set(os.listdir(env.managed / "blobs"))
    response = client.delete("/api/delete", json={"model": "managed"})
    assert response.status_code == 200 and response.data == b""
    assert not env.managed_manifest.exists()
    assert not (env.managed / "manifests" / "registry.ollama.ai").exists()  # empty directories pruned
    assert set(os.listdir(env.managed / "blobs")) < blobs_before
    assert "managed:latest" not in names_in(client)
    assert env.managed_gguf.exists()  # the blob was a hard link; the other name of the file stays


def test_delete_keeps_a_blob_another_manifest_still_uses(client, env):
    layout.add_model(env.managed, layout.library("twin"), env.managed_gguf)
    model_blob = env.managed / "blobs" / f"sha256-{layout.sha256_of(env.managed_gguf)}"
    assert client.delete("/api/delete", json={"model": "managed"}).status_code == 200
    assert model_blob.exists() and "twin:latest" in names_in(client)
    assert client.delete("/api/delete", json={"model": "twin"}).status_code == 200
    assert not model_blob.exists()


def test_delete_unloads_a_loaded_model_first(client, env):
    client.post("/api/generate", json={"model": "managed"})
    (model,) = env.backend.loaded
    assert client.delete("/api/delete", json={"name": "managed:latest"}).status_code == 200
    assert model.closed and client.get("/api/ps").get_json()["models"] == []


@pytest.mark.parametrize("name,where", [("dir-model", "models_dir"), ("ext", "external Ollama store")])
def test_read_only_models_cannot_be_deleted(client, env, name, where):
    before = env.snapshot()
    response = client.delete("/api/delete", json={"model": name})
    assert response.status_code == 403
    assert response.get_json()["error"].startswith(f"model '{name}:latest' is read-only (") and where in \
        response.get_json()["error"]
    assert env.snapshot() == before


def test_delete_of_an_unknown_model_is_404(client):
    response = client.delete("/api/delete", json={"model": "nope"})
    assert response.status_code == 404 and response.get_json() == {"error": "model 'nope' not found"}


# --- copy --------------------------------------------------------------------------------------------
def test_copy_hard_links_the_gguf_into_the_managed_store(client, env):
    response = client.post("/api/copy", json={"source": "dir-model", "destination": "mine:v1"})
    assert response.status_code == 200 and response.data == b""
    original = env.models / "dir-model.gguf"
    blob = env.managed / "blobs" / f"sha256-{layout.sha256_of(original)}"
    assert blob.stat().st_ino == original.stat().st_ino
    manifest = json.loads((env.managed / "manifests/registry.ollama.ai/library/mine/v1").read_text())
    assert manifest["schemaVersion"] == 2 and manifest["layers"][0]["mediaType"] == layout.MODEL
    models = names_in(client)
    assert models["mine:v1"]["details"] == models["dir-model:latest"]["details"]
    env.backend.enqueue("copied")
    reply = client.post("/api/generate", json={"model": "mine:v1", "prompt": "x", "stream": False}).get_json()
    assert reply["response"] == "copied" and env.backend.history[-1][0] == str(blob)


def test_copy_keeps_the_modelfile_layers_and_shares_a_managed_blob(client, env):
    blobs_before = set(os.listdir(env.managed / "blobs"))
    assert client.post("/api/copy", json={"source": "managed", "destination": "alice/copy"}).status_code == 200
    added = set(os.listdir(env.managed / "blobs")) - blobs_before
    assert len(added) <= 1  # at most a new config blob: the GGUF and params blobs are shared
    original = json.loads(env.managed_manifest.read_text())["layers"]
    copied = json.loads((env.managed / "manifests/registry.ollama.ai/alice/copy/latest").read_text())["layers"]
    assert {layer["digest"] for layer in copied} <= {layer["digest"] for layer in original}
    shown = client.post("/api/show", json={"model": "alice/copy"}).get_json()
    assert "temperature" in shown["parameters"]
    assert client.delete("/api/delete", json={"model": "managed"}).status_code == 200
    assert "alice/copy:latest" in names_in(client)
    assert client.post("/api/generate", json={"model": "alice/copy"}).status_code == 200


def test_copy_from_the_external_store_carries_its_system_prompt(client, env):
    assert client.post("/api/copy", json={"source": "ext", "destination": "ext2"}).status_code == 200
    assert client.post("/api/show", json={"model": "ext2"}).get_json()["system"] == "From the store."


@pytest.mark.parametrize("payload,status", [
    ({"source": "nope", "destination": "x"}, 404),
    ({"source": "managed", "destination": "../x"}, 400),
    ({"source": "managed"}, 400),
    ({"destination": "x"}, 400),
    ({"source": "managed", "destination": "dir-model"}, 403),
])
def test_copy_errors(client, env, payload, status):
    before = env.snapshot()
    response = client.post("/api/copy", json=payload)
    assert response.status_code == status and set(response.get_json()) == {"error"}
    assert env.snapshot() == before


# --- registry routes ---------------------------------------------------------------------------------
def test_register_adds_a_model_that_survives_a_restart_and_is_forgotten_on_delete(client, env):
    path = write_header_model(env.outside / "registered.gguf", context_length=64)
    response = client.post("/models/register", json={"name": "Reg:One", "path": str(path)})
    assert response.status_code == 201
    entry = response.get_json()
    assert entry["name"] == "reg:one" and entry["source"] == "registered" and entry["path"] == str(path)
    assert entry["inspection"]["context_length"] == 64
    assert json.loads((env.data / "registered.json").read_text())["models"] == {"reg:one": str(path)}
    restarted = env.app().test_client()
    assert "reg:one" in names_in(restarted)
    assert restarted.delete("/api/delete", json={"model": "reg:one"}).status_code == 200
    assert path.exists() and "reg:one" not in names_in(restarted)


@pytest.mark.parametrize("payload,status", [
    ({"name": "ok", "path": "relative/x.gguf"}, 400),
    ({"name": "ok", "path": "/nonexistent/x.gguf"}, 400),
    ({"name": "ok", "path": "/etc/passwd"}, 400),
    ({"name": "ok"}, 400),
    ({"name": "../../etc/passwd", "path": "GOOD"}, 400),
    ({"name": "dir-model", "path": "GOOD"}, 403),
])
def test_register_errors(client, env, payload, status):
    if payload.get("path") == "GOOD":
        payload = {**payload, "path": str(env.secret)}
    response = client.post("/models/register", json=payload)
    assert response.status_code == status and set(response.get_json()) == {"error", "detail"}


def test_register_refuses_a_file_that_is_not_gguf(client, env):
    fake = env.outside / "fake.gguf"
    fake.write_text("not a model")
    link = env.outside / "link.gguf"
    link.symlink_to(env.outside / "canary.txt")
    for path in (fake, link):
        assert client.post("/models/register", json={"name": "x", "path": str(path)}).status_code == 400


def test_set_active_is_persisted_and_reported(client, env):
    active = client.get("/models/active").get_json()
    assert (active["active"], active["id"], active["chosen"]) == ("dir-model:latest", "dir-model:latest", None)
    response = client.post("/models/set_active", json={"model": "ext"})
    assert response.status_code == 200
    assert response.get_json() == {"active": "ext:latest", "status": "activated", "id": "ext:latest"}
    active = client.get("/models/active").get_json()
    assert (active["active"], active["chosen"]) == ("ext:latest", "ext:latest")
    assert env.app().test_client().get("/models/active").get_json()["active"] == "ext:latest"
    assert services_of(client).catalogue.default().name == "ext:latest"


@pytest.mark.parametrize("payload,status", [({"model": "nope"}, 404), ({"model": "../x"}, 400), ({}, 400)])
def test_set_active_errors(client, payload, status):
    response = client.post("/models/set_active", json=payload)
    assert response.status_code == status and set(response.get_json()) == {"error", "detail"}


def test_a_request_naming_no_model_uses_the_active_one(client, env):
    client.post("/models/set_active", json={"model": "ext"})
    env.backend.enqueue("hi")
    client.post("/api/generate", json={"prompt": "x", "stream": False})
    assert env.backend.history[-1][0].startswith(str(env.external))


# --- path safety in every dialect ---------------------------------------------------------------------
BAD_NAMES = ["../../etc/passwd", "../outside/secret", "/etc/passwd", "..\\..\\outside\\secret", "a\0b",
             "%2e%2e/%2e%2e/outside/secret", "sha256-../x", "library/../../outside", "a/b/c/d", "a\n:latest",
             "x" * 300]


def _attempts(name: str):
    """(description, method, path, json) for one hostile name in every place a model name is accepted."""
    yield "ollama show", "post", "/api/show", {"model": name}
    yield "ollama delete", "delete", "/api/delete", {"model": name}
    yield "ollama copy source", "post", "/api/copy", {"source": name, "destination": "fine"}
    yield "ollama copy destination", "post", "/api/copy", {"source": "managed", "destination": name}
    yield "ollama generate", "post", "/api/generate", {"model": name, "prompt": "x", "stream": False}
    yield "openai chat", "post", "/v1/chat/completions", {"model": name, "messages": [{"role": "user",
                                                                                       "content": "x"}]}
    yield "openai completions", "post", "/v1/completions", {"model": name, "prompt": "x"}
    yield "tgi generate", "post", "/generate", {"inputs": "x", "model": name}
    yield "tgi parameters.model", "post", "/generate", {"inputs": "x", "parameters": {"model": name}}
    yield "register", "post", "/models/register", {"name": name, "path": None}
    yield "set_active", "post", "/models/set_active", {"model": name}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_hostile_names_are_4xx_everywhere_and_touch_nothing(client, env, name):
    before = env.snapshot()
    for what, method, path, body in _attempts(name):
        if body.get("path", "") is None:
            body = {**body, "path": str(env.secret)}
        response = getattr(client, method)(path, json=body)
        assert 400 <= response.status_code < 500, (what, response.status_code, response.get_data(as_text=True))
    assert env.snapshot() == before
    assert all(str(env.outside) not in model.path for model in env.backend.loaded)


@pytest.mark.parametrize("url", ["/v1/models/../../etc/passwd", "/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                 "/v1/models/%2Fetc%2Fpasswd", "/v1/models/..%5C..%5Coutside",
                                 "/v1/models/a%00b", "/v1/models/sha256-..%2Fx"])
def test_hostile_model_ids_in_the_url_are_4xx(client, env, url):
    before = env.snapshot()
    response = client.get(url, follow_redirects=True)  # werkzeug turns `//` into a redirect first
    assert 400 <= response.status_code < 500
    assert env.snapshot() == before


def test_with_inspection_off_no_route_reads_a_gguf_header(make_app, monkeypatch):
    """enable_model_inspection: false is honoured in one place: GET /models, TGI /info, /api/tags, /api/show,
    /health and the weight planner never reach the inspector."""
    from ollama_server.models.inspect import Inspector

    def refuse(self, path):
        raise AssertionError(f"a GGUF header was read: {path}")
    monkeypatch.setattr(Inspector, "inspect", refuse)
    client = make_app(enable_model_inspection=False).test_client()
    assert client.get("/models").status_code == 200
    assert client.get("/info").status_code == 200
    assert client.get("/api/tags").status_code == 200
    assert client.post("/api/show", json={"model": "tiny"}).status_code == 200
    assert client.get("/health").status_code in (200, 503)
    planned = client.get("/api/dashboard/weight-distribution?model=tiny")
    assert planned.status_code == 422 and "enable_model_inspection" in planned.get_json()["error"]
