"""The managed store (<data_dir>/store, Ollama's layout): the only place the API writes or deletes models."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional

from ollama_server.models import ollama_store as store
from ollama_server.models.catalogue import ModelSpec

MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"


def root_for(data_dir: str | Path) -> Path:
    """The managed store of a data directory."""
    return Path(data_dir) / "store"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    os.close(handle)
    return Path(name)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new one, never a part."""
    tmp = _temporary(path.parent)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _digests(manifest: Path) -> set[str]:
    try:
        body = json.loads(manifest.read_bytes())
        entries = [body.get("config") or {}] + list(body.get("layers") or [])
        return {store.digest_hex(entry.get("digest")) for entry in entries if isinstance(entry, dict)}
    except (OSError, ValueError, AttributeError):
        return set()


def _is_model_blob(root: Path, path: str) -> bool:
    blobs = Path(os.path.realpath(root / "blobs"))
    return Path(os.path.realpath(path)).parent == blobs


class ManagedStore:
    """<data_dir>/store: blobs added, manifests written and removed under one lock of its own, so that a
    delete's blob collection never removes a blob that a concurrent copy or pull is about to reference."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.lock = threading.RLock()

    def add_blob_bytes(self, data: bytes) -> dict:
        """Store bytes as a blob; returns its layer fields (digest, size)."""
        hex_digest = hashlib.sha256(data).hexdigest()
        target = store.blob_path(self.root, f"sha256:{hex_digest}")
        with self.lock:
            if not target.is_file():
                write_atomic(target, data)
        return {"digest": f"sha256:{hex_digest}", "size": len(data)}


    def add_blob_file(self, source: Path, hex_digest: Optional[str] = None) -> dict:
        """Hard-link a file into blobs (copy it across filesystems) under its sha256; returns digest and size."""
        hex_digest = hex_digest or sha256_file(source)
        target = store.blob_path(self.root, f"sha256:{hex_digest}")
        size = source.stat().st_size
        with self.lock:
            if target.is_file():
                return {"digest": f"sha256:{hex_digest}", "size": size}
            tmp = _temporary(target.parent)
            tmp.unlink()
            try:
                try:
                    os.link(source, tmp)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                        raise
                    shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return {"digest": f"sha256:{hex_digest}", "size": size}


    def write_manifest(self, name: str, config: dict, layers: list[dict]) -> Path:
        """Write the manifest of `name` (schemaVersion 2) atomically; returns its path."""
        path = store.manifest_path(self.root, name)
        body = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA, "config": config, "layers": layers}
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            store.inside(self.root, path.parent)  # a directory swapped for a symlink since the check above
            write_atomic(path, json.dumps(body, indent=2).encode("utf-8"))
        return path


    def delete(self, manifest: str | Path) -> None:
        """Remove a manifest, its empty parent directories, and its blobs no other manifest references."""
        root = self.root
        path = Path(manifest)
        with self.lock:
            store.inside(root / "manifests", path)
            doomed = _digests(path)
            path.unlink()
            parent, top = path.parent, root / "manifests"
            while parent != top and top in parent.parents and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
            for _, other in store.manifest_files(root):
                doomed -= _digests(other)
            for hex_digest in doomed:
                store.blob_path(self.root, f"sha256:{hex_digest}").unlink(missing_ok=True)


    def copy(self, spec: ModelSpec, destination: str, config_facts: dict) -> Path:
        """Write a manifest for `destination` in the managed store serving the same GGUF and Modelfile layers."""
        root = self.root
        source = Path(spec.path)
        shared = spec.source == "store" and _is_model_blob(root, spec.path)
        # Hashing a multi-GB file takes seconds: done before taking the lock.
        hex_digest = source.name.removeprefix("sha256-") if shared else sha256_file(source)
        with self.lock:
            model = self.add_blob_file(source, hex_digest)
            layers = [{"mediaType": store.MODEL_MEDIA, **model}]
            extras = ((store.TEMPLATE_MEDIA, spec.template), (store.SYSTEM_MEDIA, spec.system),
                      (store.PARAMS_MEDIA, json.dumps(spec.parameters) if spec.parameters else None))
            for media, text in extras:
                if text:
                    layers.append({"mediaType": media, **self.add_blob_bytes(text.encode("utf-8"))})
            config = {"model_format": "gguf", **config_facts}
            config_layer = {"mediaType": CONFIG_MEDIA, **self.add_blob_bytes(json.dumps(config).encode("utf-8"))}
            return self.write_manifest(destination, config_layer, layers)
