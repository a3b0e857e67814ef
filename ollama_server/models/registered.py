"""Models registered through the API: name -> GGUF path, persisted in <data_dir>/registered.json."""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.catalogue import spec_for_file
from ollama_server.models.once_log import OnceLog
from ollama_server.models.managed_store import write_atomic

log = logging.getLogger(__name__)


class RegistrationError(ValueError):
    """A registration that cannot be accepted; the message says why."""


def check_gguf_path(path: str) -> Path:
    """An absolute path to an existing, readable .gguf file (symlinks resolved), or a RegistrationError."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise RegistrationError("path must be a non-empty string")
    if not os.path.isabs(path):
        raise RegistrationError(f"path must be absolute: {path!r}")
    real = Path(os.path.realpath(path))
    if real.suffix.lower() != ".gguf":
        raise RegistrationError(f"not a .gguf file: {path!r}")
    try:
        with open(real, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise RegistrationError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not real.is_file() or magic != b"GGUF":
        raise RegistrationError(f"not a GGUF file: {path!r}")
    return real


class RegisteredModels:
    """Thread-safe registrations, written atomically to a JSON file on every change."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._once = OnceLog(log)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); no registered models", self.path, exc)
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        return {k: v for k, v in (models or {}).items() if isinstance(k, str) and isinstance(v, str)}

    def _write(self, models: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"models": models}, indent=2, sort_keys=True).encode("utf-8"))

    def all(self) -> dict[str, str]:
        """name -> path of every registration."""
        with self._lock:
            return self._read()

    def add(self, name: str, path: str) -> tuple[str, Path]:
        """Register (or re-point) a name; returns the normalized name and the resolved path."""
        key = names.normalize(name)
        real = check_gguf_path(path)
        with self._lock:
            models = self._read()
            models[key] = str(real)
            self._write(models)
        return key, real

    def remove(self, name: str) -> bool:
        """Forget a registration (the file itself is never touched); False if there was none."""
        key = names.normalize(name)
        with self._lock:
            models = self._read()
            if models.pop(key, None) is None:
                return False
            self._write(models)
        return True

    def specs(self) -> list[ModelSpec]:
        """A catalogue source: registrations whose file still exists."""
        specs = []
        for name, path in sorted(self.all().items()):
            try:
                specs.append(spec_for_file(Path(path), names.normalize(name), "registered"))
            except (OSError, names.InvalidModelName) as exc:
                self._once.warn(f"registered model {name} skipped: {exc}")
        return specs
