"""ModelStore: the one owner of what models exist — listing, inspection, registering, copying, removing,
and the active model — over the catalogue, the managed store, registrations and the GGUF inspector."""
from __future__ import annotations

import logging
from typing import Callable
from typing import Iterator
from typing import Optional

from ollama_server.models import names
from ollama_server.models import pull as pulling
from ollama_server.models.active import ActiveModel
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.inspect import Inspector
from ollama_server.models.inspect import ModelInfo
from ollama_server.models.managed_store import ManagedStore
from ollama_server.models.once_log import OnceLog
from ollama_server.models.ollama_store import StoreError
from ollama_server.models.ollama_store import scan_store
from ollama_server.models.pull_source import PullPlan
from ollama_server.models.registered import RegisteredModels
from ollama_server.models.registered import RegistrationError
from ollama_server.models.sources import ConfiguredSources

log = logging.getLogger(__name__)


class ModelStoreError(Exception):
    """A change the store refuses: kind is invalid_request, not_found, forbidden or internal."""

    def __init__(self, kind: str, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.kind, self.message, self.param = kind, message, param


def read_only_error(spec: ModelSpec) -> ModelStoreError:
    """The refusal for a model the API may not change, naming where it lives."""
    where = {"directory": "from models_dir", "ollama": "from the external Ollama store (manifests_dir)",
             "default": "the embedded default model"}.get(spec.source, spec.source)
    return ModelStoreError("forbidden", f"model '{spec.name}' is read-only ({where})", param="model")


class ModelStore:
    """Models by name, what their GGUF headers say (only when inspection is on), and the changes the API makes."""

    def __init__(self, inspector: Inspector, managed: ManagedStore, registered: RegisteredModels,
                 active: ActiveModel, sources: ConfiguredSources, fallback: Callable[[], list[ModelSpec]],
                 inspection: bool = True):
        # Sources in priority order: model directories and the external Ollama store (read-only; see
        # models/sources.py for the spellings accepted), the managed store, API registrations; the fallback
        # (the embedded default) only when all are empty. A model whose inspection failed is never the default.
        once = OnceLog(log)
        self.catalogue = Catalogue([sources.scan, lambda: scan_store(managed.root, "store", once.warn),
                                    registered.specs],
                                   fallback=fallback, active=active.get, usable=self.usable)
        self.inspector = inspector
        self.managed = managed
        self.registered = registered
        self.active = active
        self.sources = sources
        self.inspection = inspection

    # --- reading ------------------------------------------------------------------------------
    def all(self) -> list[ModelSpec]:
        return self.catalogue.all()

    def get(self, name: str) -> Optional[ModelSpec]:
        return self.catalogue.get(name)

    def refresh(self) -> list[ModelSpec]:
        return self.catalogue.refresh()

    def candidates(self) -> Iterator[ModelSpec]:
        return self.catalogue.candidates()

    def info(self, spec: ModelSpec) -> ModelInfo:
        """The cached inspection of a model's GGUF; with enable_model_inspection off, only its size (no
        header is read, anywhere: this is the one place that decides)."""
        if not self.inspection:
            return ModelInfo(path=spec.path, file_size=spec.size_bytes)
        return self.inspector.inspect(spec.path)

    def trained_context(self, path: str) -> Optional[int]:
        """The context the model was trained with, or None (unknown, or inspection off)."""
        return self.inspector.inspect(path).context_length if self.inspection else None

    def usable(self, spec: ModelSpec) -> bool:
        """False for a model whose inspection failed (never offered as the default)."""
        return not self.inspection or not self.inspector.inspect(spec.path).error

    def broken_file(self, spec: ModelSpec) -> Optional[str]:
        """Why a model's file is broken (its inspection error) while another model is usable, else None. As in
        the catalogue's candidates: when no model passes inspection, the loader's own error is the answer."""
        error = self.info(spec).error
        if not error or not any(self.usable(other) for other in self.all() if other.name != spec.name):
            return None
        return error

    # --- changes ------------------------------------------------------------------------------
    def register(self, name: str, path: Optional[str]) -> ModelSpec:
        """Register an existing .gguf file under a name (a registered name may be re-pointed)."""
        existing = self.catalogue.get(name)
        if existing is not None and existing.source != "registered":
            raise ModelStoreError("forbidden", f"model '{name}' already exists ({existing.source})")
        try:
            name, _ = self.registered.add(name, path)
        except RegistrationError as exc:
            raise ModelStoreError("invalid_request", str(exc), param="path") from None
        self.catalogue.refresh()
        spec = self.catalogue.get(name)
        if spec is None:  # shadowed by a source that appeared meanwhile
            raise ModelStoreError("forbidden", f"model '{name}' already exists")
        return spec

    def set_active(self, name: str) -> None:
        """Make a model the one used when a request names none (persisted)."""
        if self.catalogue.get(name) is None:
            raise ModelStoreError("not_found", f"model '{name}' not found", param="model")
        self.active.set(name)

    def remove(self, spec: ModelSpec) -> None:
        """Forget a managed or registered model (a registered file itself is kept); unload it first."""
        if spec.read_only:
            raise read_only_error(spec)
        if spec.source == "registered":
            self.registered.remove(spec.name)
        else:
            try:
                self.managed.delete(spec.manifest)
            except FileNotFoundError:
                raise ModelStoreError("not_found", f"model '{spec.name}' not found", param="model") from None
            except StoreError as exc:
                raise ModelStoreError("forbidden", str(exc)) from None
        self.catalogue.refresh()

    def pull(self, plan: PullPlan, allow_private: bool, insecure: bool, partial_max_age: float) -> Iterator[dict]:
        """Progress events of a download into the managed store; the catalogue is re-read when it succeeds."""
        return pulling.pull(plan, self.managed, allow_private, insecure=insecure, on_success=self.catalogue.refresh,
                            partial_max_age=partial_max_age)

    def copy(self, spec: ModelSpec, destination: str) -> None:
        """Copy a model under a new name into the managed store (its GGUF hard-linked, not duplicated)."""
        try:
            destination = names.normalize(destination)
        except names.InvalidModelName:
            raise ModelStoreError("invalid_request", f"invalid model name {destination[:200]!r}",
                                  param="destination") from None
        existing = self.catalogue.get(destination)
        if existing is not None and existing.read_only:
            raise read_only_error(existing)
        facts = self.info(spec)
        config = {"model_family": facts.architecture, "model_families": [facts.architecture] if facts.architecture
                  else [], "model_type": facts.size_label, "file_type": facts.file_type}
        try:
            self.managed.copy(spec, destination, config)
        except StoreError as exc:
            raise ModelStoreError("invalid_request", str(exc), param="destination") from None
        except OSError as exc:
            log.warning("copy %s -> %s failed: %s", spec.name, destination, exc)
            raise ModelStoreError("internal", f"copy failed: {exc.strerror or exc}") from None
        self.catalogue.refresh()
