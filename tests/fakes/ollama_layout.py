"""Builds Ollama-layout stores for tests: manifests/<host>/<ns>/<name>/<tag> JSON + blobs/sha256-<hex>."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
LICENSE = "application/vnd.ollama.image.license"
CONFIG = "application/vnd.docker.container.image.v1+json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def blob_bytes(root: Path, data: bytes) -> dict:
    """Store bytes as a blob; the layer's digest and size."""
    hex_digest = hashlib.sha256(data).hexdigest()
    path = root / "blobs" / f"sha256-{hex_digest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{hex_digest}", "size": len(data)}


def blob_file(root: Path, source: Path, hex_digest: Optional[str] = None) -> dict:
    """Hard-link a file into blobs under its sha256 (pass the digest when it is already known)."""
    hex_digest = hex_digest or sha256_of(source)
    path = root / "blobs" / f"sha256-{hex_digest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.link(source, path)
    return {"digest": f"sha256:{hex_digest}", "size": source.stat().st_size}


def write_manifest(root: Path, parts: tuple[str, str, str, str], body: dict | bytes) -> Path:
    """Write manifests/<host>/<ns>/<name>/<tag>; bytes are written as given (for broken manifests)."""
    path = root.joinpath("manifests", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    return path


def add_model(root: Path, parts: tuple[str, str, str, str], gguf: Path, *, template: Optional[str] = None,
              system: Optional[str] = None, params: Optional[dict] = None, hex_digest: Optional[str] = None) -> Path:
    """A complete model as Ollama writes it: config, model layer (hard-linked), optional Modelfile layers."""
    layers = [{"mediaType": MODEL, **blob_file(root, gguf, hex_digest)}]
    for media, text in ((TEMPLATE, template), (SYSTEM, system), (PARAMS, json.dumps(params) if params else None)):
        if text is not None:
            layers.append({"mediaType": media, **blob_bytes(root, text.encode())})
    layers.append({"mediaType": LICENSE, **blob_bytes(root, b"test licence")})
    config = {"mediaType": CONFIG, **blob_bytes(root, json.dumps({"model_format": "gguf"}).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": config, "layers": layers}
    return write_manifest(root, parts, manifest)


def library(name: str, tag: str = "latest") -> tuple[str, str, str, str]:
    """Manifest path parts of an official-library model."""
    return ("registry.ollama.ai", "library", name, tag)
