"""Puts a pulled GGUF into the managed store: blob rename, config blob, then the manifest, under the store lock."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ollama_server.models import inspect
from ollama_server.models import managed_store
from ollama_server.models import ollama_store
from ollama_server.models.pull_source import PullError


def blob_path(store: Path, digest: str) -> Path:
    """blobs/sha256-<hex> of 64 lower-case hex digits; anything else never becomes a path."""
    try:
        return ollama_store.blob_path(store, f"sha256:{digest}")
    except ollama_store.StoreError as exc:
        raise PullError(400, str(exc)) from None


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_facts(model_path: Path) -> dict:
    """Ollama's config blob for a GGUF (format, family, parameter size, quantization) from its header."""
    info = inspect.read_info(str(model_path))
    config: dict = {"model_format": "gguf"}
    if info.architecture:
        config.update(model_family=info.architecture, model_families=[info.architecture])
    if info.size_label:
        config["model_type"] = info.size_label
    if info.file_type:
        config["file_type"] = info.file_type
    return config


def write_model(managed: managed_store.ManagedStore, name: str, digest: str, size: int,
                partial: Optional[Path] = None) -> Path:
    """Rename `partial` (if any) to blobs/sha256-<digest>, then write the config blob and, last, the manifest.

    Done under the managed store's lock, so that a concurrent delete never collects the blob between
    the rename and the manifest that references it.
    """
    target = blob_path(managed.root, digest)
    config = json.dumps(config_facts(partial or target), separators=(",", ":")).encode("utf-8")
    with managed.lock:
        if partial is not None:
            os.replace(partial, target)
            fsync_dir(target.parent)
        if not target.is_file():
            raise PullError(500, f"the blob sha256:{digest} disappeared before its manifest was written")
        try:
            config_layer = {"mediaType": managed_store.CONFIG_MEDIA, **managed.add_blob_bytes(config)}
            layers = [{"mediaType": ollama_store.MODEL_MEDIA, "digest": f"sha256:{digest}", "size": size}]
            return managed.write_manifest(name, config_layer, layers)
        except ollama_store.StoreError as exc:
            raise PullError(400, str(exc)) from None
