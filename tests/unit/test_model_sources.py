"""The configured model paths as the seed's configuration spells them: manifests_dir as the store root or its
manifests/ folder, a store's blobs/ folder in models_dir; a path that is neither is reported, never silently empty."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ollama_server.models.sources import ConfiguredSources
from ollama_server.services import EXTENSION_KEY
from tests.fakes import ollama_layout as layout
from tests.fakes.tiny_gguf import write_header_model


@pytest.fixture
def store(tmp_path) -> Path:
    """An Ollama-layout store (manifests/ + blobs/) holding one model, `stored:latest`."""
    root = tmp_path / "ollama" / "models"
    (tmp_path / "src").mkdir()
    layout.add_model(root, layout.library("stored"), write_header_model(tmp_path / "src" / "m.gguf"))
    return root


def tag_names(client) -> list[str]:
    return [model["name"] for model in client.get("/api/tags").get_json()["models"]]


def test_it_lists_the_store_when_manifests_dir_is_the_manifests_folder(make_app, store):
    client = make_app(manifests_dir=str(store / "manifests")).test_client()
    assert "stored:latest" in tag_names(client)


def test_it_lists_the_store_when_manifests_dir_is_the_store_root(make_app, store):
    client = make_app(manifests_dir=str(store)).test_client()
    assert "stored:latest" in tag_names(client)


def test_it_lists_the_store_once_when_configured_as_the_seed_does(make_app, store):
    client = make_app(manifests_dir=str(store / "manifests"), models_dir=[str(store / "blobs")]).test_client()
    assert tag_names(client) == ["stored:latest"]
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert [(p["setting"], p["status"], p["kind"]) for p in body["components"]["model_sources"]["paths"]] == [
        ("models_dir", "ok", "ollama_store"), ("manifests_dir", "ok", "ollama_store")]


def test_a_blobs_folder_in_models_dir_is_read_as_its_store(make_app, store):
    client = make_app(models_dir=[str(store / "blobs")]).test_client()
    assert tag_names(client) == ["stored:latest"]
    (spec,) = client.application.extensions[EXTENSION_KEY].catalogue.all()
    assert spec.source == "ollama" and Path(spec.path).parent == store / "blobs"


def test_a_store_named_by_several_paths_is_read_once(store):
    sources = ConfiguredSources([str(store / "blobs"), str(store / "blobs")], str(store))
    assert [spec.name for spec in sources.scan()] == ["stored:latest"]


def _bad_path(kind: str, tmp_path: Path, store: Path) -> tuple[dict, str, str]:
    """(settings, the configured path, a word of the problem) for each kind of unusable path."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    orphan = tmp_path / "orphan" / "blobs"
    orphan.mkdir(parents=True)
    (orphan / f"sha256-{'a' * 64}").write_bytes(b"x")
    path = {"missing manifests_dir": tmp_path / "nowhere", "manifests_dir is a file": tmp_path / "file.txt",
            "manifests_dir without manifests": tmp_path / "plain", "missing models_dir": tmp_path / "gone",
            "models_dir is a file": tmp_path / "file.txt", "blobs without manifests": orphan}[kind]
    setting = "manifests_dir" if kind.startswith(("missing manifests", "manifests")) else "models_dir"
    word = {"missing manifests_dir": "does not exist", "manifests_dir is a file": "not a directory",
            "manifests_dir without manifests": "not an Ollama store", "missing models_dir": "does not exist",
            "models_dir is a file": "not a directory", "blobs without manifests": "no manifests/"}[kind]
    models = [str(store / "blobs")] + ([str(path)] if setting == "models_dir" else [])
    settings = {"models_dir": models, "manifests_dir": str(path) if setting == "manifests_dir" else ""}
    return settings, str(path), word


@pytest.mark.parametrize("kind", ["missing manifests_dir", "manifests_dir is a file",
                                  "manifests_dir without manifests", "missing models_dir",
                                  "models_dir is a file", "blobs without manifests"])
def test_an_unusable_path_is_warned_about_once_and_reported_on_health(make_app, store, tmp_path, kind, caplog):
    settings, path, word = _bad_path(kind, tmp_path, store)
    with caplog.at_level(logging.WARNING):
        client = make_app(**settings).test_client()
        for _ in range(3):
            assert tag_names(client) == ["stored:latest"]  # the other paths still serve
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and path in r.getMessage()]
    assert len(warnings) == 1 and word in warnings[0].getMessage()
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "degraded"
    sources = body["components"]["model_sources"]
    assert sources["status"] == "error"
    (entry,) = [p for p in sources["paths"] if p["path"] == path]
    assert entry["status"] == "error" and word in entry["error"]
    assert any(path in problem for problem in body["problems"])


def test_an_empty_models_dir_is_reported_as_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    assert ConfiguredSources([str(tmp_path / "empty")]).report() == [
        {"setting": "models_dir", "path": str(tmp_path / "empty"), "status": "ok", "kind": "directory"}]
