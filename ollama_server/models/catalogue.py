"""The catalogue: every model the service can serve, by name, merged from its sources."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Callable
from typing import Iterator
from typing import Optional

from ollama_server.models import names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A servable model: its name, GGUF path and what is known without loading it."""

    name: str
    path: str
    size_bytes: int
    modified_at: datetime
    source: str  # "directory" | "ollama" (external store) | "store" (managed) | "registered" | "default"
    digest: str = ""
    template: Optional[str] = None
    system: Optional[str] = None
    parameters: dict = field(default_factory=dict, compare=False, hash=False)
    manifest: str = ""  # the Ollama manifest file this model was read from, if any

    @property
    def read_only(self) -> bool:
        """Only the managed store and API registrations may be changed through the API."""
        return self.source not in ("store", "registered")


def spec_for_file(path: Path, name: str, source: str) -> ModelSpec:
    """A ModelSpec for a GGUF file on disk."""
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
    return ModelSpec(name=name, path=str(path), size_bytes=stat.st_size, modified_at=modified, source=source)


def scan_directory(directory: str, warn: Callable[[str], None] = log.warning) -> list[ModelSpec]:
    """Every readable .gguf file directly in a directory."""
    root = Path(directory)
    if not root.is_dir():
        warn(f"models_dir {directory} is not a directory; skipped")
        return []
    specs = []
    for path in sorted(root.glob("*.gguf")):
        try:
            if path.is_file():
                specs.append(spec_for_file(path, names.from_filename(path.stem), "directory"))
        except OSError:
            continue  # removed while we listed it
    return specs


class Catalogue:
    """Thread-safe name -> ModelSpec map rebuilt from its sources on refresh()."""

    # A lookup that misses re-reads the sources (a model just dropped into a directory), at most this often.
    MISS_REFRESH_S = 1.0

    def __init__(self, sources: list[Callable[[], list[ModelSpec]]],
                 fallback: Optional[Callable[[], list[ModelSpec]]] = None,
                 active: Optional[Callable[[], Optional[str]]] = None,
                 usable: Optional[Callable[[ModelSpec], bool]] = None):
        self._sources = sources
        self._fallback = fallback
        self._active = active
        self._usable = usable  # False for a model known to be broken (its GGUF inspection failed)
        self._lock = threading.Lock()
        self._specs: dict[str, ModelSpec] = {}
        self._refreshed_at = 0.0

    def refresh(self) -> list[ModelSpec]:
        """Re-read every source; earlier sources win a name clash; the fallback only when all are empty."""
        found: dict[str, ModelSpec] = {}
        for source in self._sources:
            for spec in _safely(source):
                found.setdefault(spec.name, spec)
        if not found and self._fallback is not None:
            for spec in _safely(self._fallback):
                found.setdefault(spec.name, spec)
        with self._lock:
            self._specs = found
            self._refreshed_at = time.monotonic()
        return list(found.values())

    def all(self) -> list[ModelSpec]:
        """All models, sorted by name."""
        with self._lock:
            return sorted(self._specs.values(), key=lambda spec: spec.name)

    def get(self, name: str) -> Optional[ModelSpec]:
        """The model called `name` (tag defaults to latest), or None."""
        try:
            key = names.normalize(name)
        except names.InvalidModelName:
            return None
        with self._lock:
            spec = self._specs.get(key)
            stale = time.monotonic() - self._refreshed_at >= self.MISS_REFRESH_S
        if spec is None and stale:
            self.refresh()
            with self._lock:
                spec = self._specs.get(key)
        return spec

    def smallest(self) -> Optional[ModelSpec]:
        """The smallest model by file size."""
        with self._lock:
            specs = list(self._specs.values())
        return min(specs, key=lambda spec: (spec.size_bytes, spec.name), default=None)

    def candidates(self) -> Iterator[ModelSpec]:
        """Models for a request that names none, best first: the active model if set and present, then the
        rest from the smallest. A model that is not `usable` (its inspection failed) is left out, unless no
        model is usable: then all come, in the same order, so that the load error is what gets reported."""
        with self._lock:
            specs = sorted(self._specs.values(), key=lambda spec: (spec.size_bytes, spec.name))
        name = self._active() if self._active is not None else None
        ordered = sorted(specs, key=lambda spec: spec.name != name) if name else specs  # stable: sizes kept
        any_usable = False
        for spec in ordered:
            if self._is_usable(spec):
                any_usable = True
                yield spec
        if not any_usable:
            yield from ordered

    def _is_usable(self, spec: ModelSpec) -> bool:
        if self._usable is None:
            return True
        try:
            return bool(self._usable(spec))
        except Exception:  # a failing check must not hide a model
            log.exception("checking model %s failed", spec.name)
            return True

    def default(self) -> Optional[ModelSpec]:
        """The answer when a request names no model: the first of candidates(), or None when there is none."""
        return next(self.candidates(), None)

def _safely(source: Callable[[], list[ModelSpec]]) -> list[ModelSpec]:
    # One broken source (an unreadable directory, a bad store) must not empty the whole listing.
    try:
        return list(source())
    except Exception:
        log.exception("a model source failed; its models are left out of this listing")
        return []
