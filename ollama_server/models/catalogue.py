"""The catalogue: every model the service can serve, by name, merged from its sources."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Callable
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
    source: str  # "directory" | "default" | "ollama" | "registered"
    digest: str = ""
    template: Optional[str] = None
    system: Optional[str] = None
    parameters: dict = field(default_factory=dict, compare=False, hash=False)


def spec_for_file(path: Path, name: str, source: str) -> ModelSpec:
    """A ModelSpec for a GGUF file on disk."""
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
    return ModelSpec(name=name, path=str(path), size_bytes=stat.st_size, modified_at=modified, source=source)


def scan_directory(directory: str) -> list[ModelSpec]:
    """Every readable .gguf file directly in a directory."""
    root = Path(directory)
    if not root.is_dir():
        log.warning("models_dir %s is not a directory; skipped", directory)
        return []
    specs = []
    for path in sorted(root.glob("*.gguf")):
        if path.is_file():
            specs.append(spec_for_file(path, names.from_filename(path.stem), "directory"))
    return specs


class Catalogue:
    """Thread-safe name -> ModelSpec map rebuilt from its sources on refresh()."""

    def __init__(self, sources: list[Callable[[], list[ModelSpec]]]):
        self._sources = sources
        self._lock = threading.Lock()
        self._specs: dict[str, ModelSpec] = {}

    def refresh(self) -> list[ModelSpec]:
        """Re-read every source; earlier sources win a name clash."""
        found: dict[str, ModelSpec] = {}
        for source in self._sources:
            for spec in source():
                found.setdefault(spec.name, spec)
        with self._lock:
            self._specs = found
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
            return self._specs.get(key)

    def smallest(self) -> Optional[ModelSpec]:
        """The smallest model by file size: the answer when a request names none."""
        with self._lock:
            specs = list(self._specs.values())
        return min(specs, key=lambda spec: (spec.size_bytes, spec.name), default=None)
