"""Reading an Ollama store in place, and the catalogue merged from every source."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from ollama_server.models import ollama_store
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import scan_directory
from ollama_server.models.ollama_store import StoreError
from ollama_server.models.ollama_store import scan_store
from tests.fakes import ollama_layout as layout
from tests.fakes.tiny_gguf import write_header_model


@pytest.fixture
def gguf_file(tmp_path) -> Path:
    (tmp_path / "src").mkdir()
    return write_header_model(tmp_path / "src" / "m.gguf")


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


def by_name(specs):
    return {spec.name: spec for spec in specs}


def test_names_follow_ollama_host_namespace_and_tag_rules(store, gguf_file):
    layout.add_model(store, layout.library("llama3.2"), gguf_file)
    layout.add_model(store, layout.library("qwen3", "0.6b"), gguf_file)
    layout.add_model(store, ("registry.ollama.ai", "alice", "mymodel", "v1"), gguf_file)
    layout.add_model(store, ("hf.co", "bartowski", "gemma-gguf", "Q4_K_M"), gguf_file)
    names = sorted(by_name(scan_store(store)))
    assert names == ["alice/mymodel:v1", "hf.co/bartowski/gemma-gguf:q4_k_m", "llama3.2:latest", "qwen3:0.6b"]


def test_the_model_layer_is_the_gguf_and_modelfile_layers_are_honoured(store, gguf_file):
    layout.add_model(store, layout.library("m"), gguf_file, template="{{ .Prompt }}", system="Be brief.",
                     params={"temperature": 0.2, "stop": ["<end>"]})
    (spec,) = scan_store(store)
    assert Path(spec.path).read_bytes() == gguf_file.read_bytes()
    assert Path(spec.path).parent == store / "blobs" and spec.source == "ollama"
    assert (spec.template, spec.system) == ("{{ .Prompt }}", "Be brief.")
    assert spec.parameters == {"temperature": 0.2, "stop": ["<end>"]}


def test_the_digest_is_the_sha256_of_the_manifest_file(store, gguf_file):
    manifest = layout.add_model(store, layout.library("m"), gguf_file)
    (spec,) = scan_store(store)
    assert spec.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert spec.manifest == str(manifest)


def test_the_size_is_every_layer_plus_the_config(store, gguf_file):
    manifest = json.loads(layout.add_model(store, layout.library("m"), gguf_file, system="hi").read_text())
    (spec,) = scan_store(store)
    assert spec.size_bytes == manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def _manifest_with(store: Path, gguf_file: Path, **model_layer) -> dict:
    good = layout.blob_file(store, gguf_file)
    layer = {"mediaType": layout.MODEL, **good, **model_layer}
    return {"schemaVersion": 2, "config": {"digest": good["digest"], "size": 1}, "layers": [layer]}


@pytest.mark.parametrize("case", ["not json", "schema 1", "no layers", "no model layer", "digest traversal",
                                  "digest short", "digest upper-case", "digest sha512", "blob missing",
                                  "blob size differs", "params not json", "negative size"])
def test_a_bad_manifest_is_skipped_with_a_warning_and_the_rest_are_listed(store, gguf_file, case, caplog):
    layout.add_model(store, layout.library("good"), gguf_file)
    bodies = {
        "not json": b"{nope",
        "schema 1": {"schemaVersion": 1, "layers": []},
        "no layers": {"schemaVersion": 2},
        "no model layer": {"schemaVersion": 2, "layers": []},
        "digest traversal": _manifest_with(store, gguf_file, digest="sha256-../../../etc/passwd"),
        "digest short": _manifest_with(store, gguf_file, digest="sha256:abc"),
        "digest upper-case": _manifest_with(store, gguf_file, digest="sha256:" + "A" * 64),
        "digest sha512": _manifest_with(store, gguf_file, digest="sha512:" + "a" * 64),
        "blob missing": _manifest_with(store, gguf_file, digest="sha256:" + "0" * 64),
        "blob size differs": _manifest_with(store, gguf_file, size=5),
        "negative size": _manifest_with(store, gguf_file, size=-1),
    }
    if case == "params not json":
        body = _manifest_with(store, gguf_file)
        body["layers"].append({"mediaType": layout.PARAMS, **layout.blob_bytes(store, b"{broken")})
    else:
        body = bodies[case]
    layout.write_manifest(store, layout.library("bad"), body)
    with caplog.at_level(logging.WARNING):
        assert list(by_name(scan_store(store))) == ["good:latest"]
    assert "bad:latest skipped" in caplog.text


def test_a_blob_symlinked_outside_the_store_is_refused(store, gguf_file, tmp_path, caplog):
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(gguf_file.read_bytes())
    hex_digest = "f" * 64
    (store / "blobs").mkdir(parents=True)
    (store / "blobs" / f"sha256-{hex_digest}").symlink_to(outside)
    layer = {"mediaType": layout.MODEL, "digest": f"sha256:{hex_digest}", "size": outside.stat().st_size}
    layout.write_manifest(store, layout.library("escape"), {"schemaVersion": 2, "layers": [layer]})
    with caplog.at_level(logging.WARNING):
        assert scan_store(store) == []
    assert "outside the store" in caplog.text


def test_manifests_and_directories_linked_outside_the_store_are_refused(store, gguf_file, tmp_path):
    layout.add_model(store, layout.library("good"), gguf_file)
    elsewhere = tmp_path / "elsewhere"
    layout.add_model(elsewhere, layout.library("evil"), gguf_file)
    library = store / "manifests" / "registry.ollama.ai" / "library"
    (library / "linked").mkdir()
    (library / "linked" / "latest").symlink_to(elsewhere / "manifests/registry.ollama.ai/library/evil/latest")
    (store / "manifests" / "evil.example").symlink_to(elsewhere / "manifests" / "registry.ollama.ai")
    assert list(by_name(scan_store(store))) == ["good:latest"]


def test_symlinks_that_stay_inside_the_store_are_followed(store, gguf_file):
    layout.add_model(store, layout.library("good"), gguf_file)
    library = store / "manifests" / "registry.ollama.ai" / "library"
    (library / "alias").mkdir()
    (library / "alias" / "latest").symlink_to(library / "good" / "latest")
    assert sorted(by_name(scan_store(store))) == ["alias:latest", "good:latest"]


def test_temporary_files_and_unusable_names_are_ignored(store, gguf_file):
    manifest = layout.add_model(store, layout.library("good"), gguf_file)
    (manifest.parent / ".tmp-123").write_bytes(manifest.read_bytes())
    layout.add_model(store, layout.library("-bad"), gguf_file)
    assert list(by_name(scan_store(store))) == ["good:latest"]


def test_a_missing_store_is_empty(tmp_path):
    assert scan_store(tmp_path / "nowhere") == []


@pytest.mark.parametrize("digest", ["sha256-../x", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "../etc/passwd",
                                    "sha256:" + "g" * 64, None, 5, "sha256:" + "a" * 64 + "\n"])
def test_only_sha256_digests_become_blob_paths(store, digest):
    with pytest.raises(StoreError):
        ollama_store.blob_path(store, digest)


def test_valid_digests_in_either_spelling_name_the_same_blob(store):
    a = ollama_store.blob_path(store, "sha256:" + "a" * 64)
    assert a == ollama_store.blob_path(store, "sha256-" + "a" * 64) == store / "blobs" / ("sha256-" + "a" * 64)


def test_manifest_paths_come_only_from_valid_names(store):
    assert ollama_store.manifest_path(store, "Llama3:8B") == store / "manifests/registry.ollama.ai/library/llama3/8b"
    assert ollama_store.manifest_path(store, "ns/m") == store / "manifests/registry.ollama.ai/ns/m/latest"
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", "a\0b", "%2e%2e/x", "a/b/c/d"):
        with pytest.raises(ValueError):
            ollama_store.manifest_path(store, bad)


# --- the catalogue --------------------------------------------------------------------------------------
def test_earlier_sources_win_a_name_clash_and_the_fallback_only_fills_an_empty_catalogue(tmp_path, gguf_file):
    models = tmp_path / "models"
    models.mkdir()
    os.link(gguf_file, models / "shared.gguf")
    store = tmp_path / "store"
    layout.add_model(store, layout.library("shared"), gguf_file)
    layout.add_model(store, layout.library("only-store"), gguf_file)
    fallback_calls = []

    def fallback():
        fallback_calls.append(1)
        return scan_directory(str(models))

    catalogue = Catalogue([lambda: scan_directory(str(models)), lambda: scan_store(store)], fallback=fallback)
    catalogue.refresh()
    assert catalogue.get("shared").source == "directory" and catalogue.get("only-store").source == "ollama"
    assert fallback_calls == []
    Catalogue([lambda: []], fallback=fallback).refresh()
    assert fallback_calls == [1]


def test_a_failing_source_does_not_empty_the_catalogue(gguf_file, tmp_path):
    def broken():
        raise OSError("disk on fire")

    catalogue = Catalogue([broken, lambda: scan_directory(str(gguf_file.parent))])
    catalogue.refresh()
    assert [spec.name for spec in catalogue.all()] == ["m:latest"]


def test_a_lookup_miss_rereads_the_sources(tmp_path, gguf_file):
    models = tmp_path / "models"
    models.mkdir()
    catalogue = Catalogue([lambda: scan_directory(str(models))])
    catalogue.refresh()
    catalogue.MISS_REFRESH_S = 0.0
    assert catalogue.get("new") is None
    os.link(gguf_file, models / "new.gguf")
    assert catalogue.get("new").name == "new:latest"


def test_the_default_model_is_the_active_one_when_set_else_the_smallest(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "small.gguf").write_bytes(b"x" * 10)
    (models / "large.gguf").write_bytes(b"x" * 100)
    active = {"name": None}
    catalogue = Catalogue([lambda: scan_directory(str(models))], active=lambda: active["name"])
    catalogue.refresh()
    assert catalogue.default().name == "small:latest"
    active["name"] = "large:latest"
    assert catalogue.default().name == "large:latest"
    active["name"] = "deleted:latest"
    assert catalogue.default().name == "small:latest"


def test_an_unusable_model_is_a_default_candidate_only_when_no_model_is_usable(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "small.gguf").write_bytes(b"x" * 10)
    (models / "large.gguf").write_bytes(b"x" * 100)
    broken = {"small:latest"}
    catalogue = Catalogue([lambda: scan_directory(str(models))], usable=lambda spec: spec.name not in broken)
    catalogue.refresh()
    assert [spec.name for spec in catalogue.candidates()] == ["large:latest"]
    assert catalogue.default().name == "large:latest"
    broken.add("large:latest")
    assert [spec.name for spec in catalogue.candidates()] == ["small:latest", "large:latest"]
