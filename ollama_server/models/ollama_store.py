"""An Ollama model store read in place: manifests/<host>/<namespace>/<name>/<tag> + blobs/sha256-<hex>."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Optional

from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MODEL_MEDIA = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA = "application/vnd.ollama.image.template"
SYSTEM_MEDIA = "application/vnd.ollama.image.system"
PARAMS_MEDIA = "application/vnd.ollama.image.params"
_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
_MAX_MANIFEST_BYTES = 1 << 20   # real manifests are under 2 KB
_MAX_TEXT_LAYER_BYTES = 1 << 20  # template, system and params layers are small text


class StoreError(ValueError):
    """A manifest, digest or name that cannot be used safely; the message says why."""


def digest_hex(digest: Any) -> str:
    """The 64 hex digits of `sha256:<hex>` or `sha256-<hex>`; anything else is a StoreError."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise StoreError(f"invalid digest {str(digest)[:80]!r}: expected sha256:<64 lower-case hex digits>")
    return match.group(1)


def inside(root: Path, path: Path) -> Path:
    """`path` with symlinks resolved, if it stays inside `root`; else a StoreError."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise StoreError(f"{path} resolves outside the store")
    return real


def blob_path(root: Path, digest: str) -> Path:
    """The blob file name of a validated digest (whether it resolves inside the store is checked on use)."""
    return Path(root) / "blobs" / f"sha256-{digest_hex(digest)}"


def name_parts(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of a model name, Ollama's defaults filled in."""
    base, tag = names.normalize(name).rsplit(":", 1)
    parts = base.split("/")
    if len(parts) == 1:
        return DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0], tag
    if len(parts) == 2:
        return DEFAULT_HOST, parts[0], parts[1], tag
    return parts[0], parts[1], parts[2], tag


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    """The name a manifest path is listed under: `name:tag`, `ns/name:tag` or `host/ns/name:tag`."""
    if host == DEFAULT_HOST and namespace == DEFAULT_NAMESPACE:
        base = model
    elif host == DEFAULT_HOST:
        base = f"{namespace}/{model}"
    else:
        base = f"{host}/{namespace}/{model}"
    return names.normalize(f"{base}:{tag}")


def manifest_path(root: Path, name: str) -> Path:
    """Where the manifest of `name` lives in a store, checked to stay inside it."""
    path = Path(root, "manifests", *name_parts(name))
    inside(root, path)
    return path


def _read_small(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"{path.name} is larger than {limit} bytes")
    return data


def _layer_blob(root: Path, layer: Any) -> tuple[str, Path, int]:
    if not isinstance(layer, dict) or not isinstance(layer.get("mediaType"), str):
        raise StoreError("a layer is not an object with a mediaType")
    size = layer.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise StoreError(f"layer {layer['mediaType']} has no valid size")
    path = blob_path(root, layer.get("digest"))
    return layer["mediaType"], path, size


def _blob_file(root: Path, path: Path, size: int) -> Path:
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        raise StoreError(f"blob {path.name} is missing") from None
    # A plain file in blobs/ is inside the store when blobs/ is; only symlinks need resolving.
    real = inside(root, path) if link or path.parent.is_symlink() else path
    if not real.is_file():
        raise StoreError(f"blob {path.name} is missing")
    actual = real.stat().st_size
    if actual != size:
        # A blob still being written, or cut short: never serve half a model.
        raise StoreError(f"blob {path.name} has {actual} bytes, the manifest says {size}")
    return real


def read_manifest(root: Path, path: Path, name: str, source: str, checked: bool = False) -> ModelSpec:
    """The ModelSpec of one manifest file (`checked`: already known to be inside); StoreError if unusable."""
    real = path if checked else inside(root, path)
    data = _read_small(real, _MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise StoreError("manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise StoreError("manifest is not schemaVersion 2")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise StoreError("manifest has no layer list")
    if isinstance(manifest.get("config"), dict):
        digest_hex(manifest["config"].get("digest"))
    model: Optional[Path] = None
    total = int((manifest.get("config") or {}).get("size") or 0)
    extras: dict[str, Any] = {}
    for layer in layers:
        media, blob, size = _layer_blob(root, layer)
        total += size
        if media == MODEL_MEDIA and model is None:
            model = _blob_file(root, blob, size)
        elif media in (TEMPLATE_MEDIA, SYSTEM_MEDIA, PARAMS_MEDIA):
            text = _read_small(_blob_file(root, blob, size), _MAX_TEXT_LAYER_BYTES).decode("utf-8", "replace")
            extras[media] = text
    if model is None:
        raise StoreError("manifest has no model layer")
    parameters = {}
    if PARAMS_MEDIA in extras:
        try:
            parameters = json.loads(extras[PARAMS_MEDIA])
        except ValueError:
            raise StoreError("params layer is not valid JSON") from None
        if not isinstance(parameters, dict):
            raise StoreError("params layer is not a JSON object")
    modified = datetime.fromtimestamp(real.stat().st_mtime, tz=timezone.utc)
    return ModelSpec(name=name, path=str(model), size_bytes=total, modified_at=modified, source=source,
                     digest=hashlib.sha256(data).hexdigest(), template=extras.get(TEMPLATE_MEDIA),
                     system=extras.get(SYSTEM_MEDIA), parameters=parameters, manifest=str(path))


def _entries(root: Path, directory: Path, want_dir: bool, warn: Callable[[str], None] = log.warning) -> list[Path]:
    """Sub-directories (or files) of a store directory; a symlink counts only if it resolves inside the store."""
    found = []
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return []
    for entry in entries:
        # Dot-files are writers' temporaries (written, then renamed into place).
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            try:
                inside(root, path)
            except StoreError:
                warn(f"Ollama store {root}: {path} links outside the store; skipped")
                continue
        try:
            if (entry.is_dir() if want_dir else entry.is_file()):
                found.append(path)
        except OSError:
            continue
    return found


def manifest_files(root: Path, warn: Callable[[str], None] = log.warning) -> list[tuple[tuple[str, str, str, str], Path]]:
    """((host, namespace, model, tag), path) of every manifest file under root/manifests, all inside the store."""
    root = Path(root)
    found = []
    manifests = root / "manifests"
    if manifests.is_symlink():
        inside(root, manifests)
    for host in _entries(root, manifests, True, warn):
        for namespace in _entries(root, host, True, warn):
            for model in _entries(root, namespace, True, warn):
                for tag in _entries(root, model, False, warn):
                    found.append(((host.name, namespace.name, model.name, tag.name), tag))
    return found


def scan_store(root: str | Path, source: str = "ollama", warn: Callable[[str], None] = log.warning) -> list[ModelSpec]:
    """Every servable model of an Ollama store; a bad manifest is reported through `warn` and skipped."""
    root = Path(root)
    if not (root / "manifests").is_dir():
        return []
    try:
        files = manifest_files(root, warn)
    except StoreError as exc:
        warn(f"Ollama store {root} skipped: {exc}")
        return []
    specs = []
    for parts, path in files:
        try:
            name = display_name(*parts)
        except names.InvalidModelName:
            warn(f"Ollama store {root}: {'/'.join(parts)} is not a usable model name; skipped")
            continue
        try:
            specs.append(read_manifest(root, path, name, source, checked=True))
        except (StoreError, OSError) as exc:
            warn(f"Ollama store {root}: model {name} skipped: {exc}")
    return specs
