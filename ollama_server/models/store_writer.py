"""Writes a pulled model into an Ollama-layout store: config blob, then the manifest, atomically and last."""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path

from ollama_server.models import gguf
from ollama_server.models.pull_source import PullError
from ollama_server.models.pull_source import manifest_parts

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
_HEX = re.compile(r"^[0-9a-f]{64}$")
# llama.cpp's LLAMA_FTYPE values (general.file_type) -> the names Ollama shows as quantization_level.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
              23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
              30: "IQ4_XS", 31: "IQ1_M", 32: "BF16"}


def blob_path(store: Path, digest: str) -> Path:
    """blobs/sha256-<hex> for 64 lower-case hex digits; anything else never becomes a path."""
    if not _HEX.match(digest):
        raise PullError(400, f"invalid digest {digest!r}")
    return store / "blobs" / f"sha256-{digest}"


def manifest_path(store: Path, name: str) -> Path:
    """manifests/<host>/<namespace>/<model>/<tag> for a normalized name, checked to stay in the store."""
    root = (store / "manifests").resolve()
    path = root.joinpath(*manifest_parts(name))
    if root not in path.resolve().parents:
        raise PullError(400, f"invalid model name {name!r}")
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, data: bytes, scratch: Path) -> None:
    """Write to a temporary file in `scratch` (outside manifests/), fsync, then rename over `target`."""
    tmp = scratch / f"tmp-{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def config_for(model_path: Path) -> dict:
    """The small config blob Ollama keeps beside a model (format, family, quantization) from the header."""
    config: dict = {"model_format": "gguf"}
    try:
        header = gguf.read_header(str(model_path))
    except (gguf.GgufError, OSError, ValueError):
        return config
    if header.architecture != "unknown":
        config.update(model_family=header.architecture, model_families=[header.architecture])
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        config["file_type"] = FILE_TYPES[file_type]
    return config


def write_model(store: Path, name: str, digest: str, size: int) -> Path:
    """Write the config blob and then the manifest that makes blobs/sha256-<digest> the model `name`."""
    blobs = store / "blobs"
    target = manifest_path(store, name)
    config = json.dumps(config_for(blob_path(store, digest)), separators=(",", ":")).encode("utf-8")
    config_digest = hashlib.sha256(config).hexdigest()
    if not blob_path(store, config_digest).is_file():
        write_atomic(blob_path(store, config_digest), config, blobs)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": f"sha256:{config_digest}", "size": len(config)},
                "layers": [{"mediaType": MODEL_TYPE, "digest": f"sha256:{digest}", "size": size}]}
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(manifest, indent=None, separators=(",", ":")).encode("utf-8"), blobs)
    return target
