"""The active model: the one used when a request names none, persisted in <data_dir>/active.json."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Optional

from ollama_server.models import names
from ollama_server.models.managed_store import write_atomic

log = logging.getLogger(__name__)


class ActiveModel:
    """Thread-safe holder of the active model name; None means "the smallest model"."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._name = self._load()

    def _load(self) -> Optional[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return names.normalize(data["model"]) if data.get("model") else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s is unreadable (%s); no active model", self.path, exc)
            return None

    def get(self) -> Optional[str]:
        """The active model's name, or None."""
        with self._lock:
            return self._name

    def set(self, name: Optional[str]) -> Optional[str]:
        """Make `name` active (None clears it); persisted before returning the normalized name."""
        key = names.normalize(name) if name is not None else None
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"model": key}).encode("utf-8"))
            self._name = key
        return key
