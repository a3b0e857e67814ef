"""Services: the long-lived objects of one app (settings, catalogue, engine), reached via services()."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Optional

from flask import Flask
from flask import current_app

from ollama_server.connection_watch import ConnectionWatch
from ollama_server.engine.backend import Backend
from ollama_server.engine.engine import Engine
from ollama_server.models import inspect
from ollama_server.models import managed_store
from ollama_server.models.active import ActiveModel
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.catalogue import spec_for_file
from ollama_server.models.default_model import DEFAULT_MODEL_NAME
from ollama_server.models.default_model import ensure_default_model
from ollama_server.models.ollama_store import scan_store
from ollama_server.models.partials import expire_partials
from ollama_server.models.registered import RegisteredModels
from ollama_server.models.sources import ConfiguredSources
from ollama_server.settings import Settings

EXTENSION_KEY = "ollama_server"
PARTIAL_EXPIRY_INTERVAL_S = 300.0  # how often the background loop looks for abandoned partial downloads
WARM_UP_ATTEMPTS = 3  # default candidates warm-up tries before it gives up (each failed load costs time)
log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request handler may need, built once per app."""

    settings: Settings
    catalogue: Catalogue
    engine: Engine
    registered: Optional[RegisteredModels] = None
    active: Optional[ActiveModel] = None
    connections: ConnectionWatch = field(default_factory=ConnectionWatch)  # clients that hang up
    warming: bool = False
    warm_error: Optional[str] = None
    warm_failures: dict = field(default_factory=dict)  # model name -> load error, of candidates warm-up passed over
    sources: Optional[ConfiguredSources] = None  # models_dir and manifests_dir, for /health
    _started: bool = field(default=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self, warm: bool = True) -> None:
        """Begin background work (model warm-up); called by the serving entry point only, once."""
        if self._started:
            return
        self._started = True
        if warm:
            self.warming = True
            threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        threading.Thread(target=self._reap_idle_models, name="keep-alive", daemon=True).start()

    def _reap_idle_models(self) -> None:
        # Checked once a second; keep_alive granularity finer than that is not useful. Abandoned partial
        # downloads are looked for once at start and then every PARTIAL_EXPIRY_INTERVAL_S: their max age
        # is counted in hours, and each look lists the blobs directory.
        due = time.monotonic()
        while True:
            due = self._expire_partials_when_due(time.monotonic(), due)
            if self._stop.wait(1.0):
                return
            try:
                self.engine.unload_expired()
            except Exception:
                log.exception("keep-alive check failed")

    def _expire_partials_when_due(self, now: float, due: float) -> float:
        """Delete expired partial downloads of the managed store if `due` (monotonic) has come; the next due time."""
        if now < due:
            return due
        try:
            expire_partials(managed_store.root_for(self.settings.data_dir) / "blobs",
                            self.settings.partial_download_max_age)
        except Exception:
            log.exception("partial download expiry failed")
        return now + PARTIAL_EXPIRY_INTERVAL_S

    def _warm_up(self) -> None:
        """Load the default model; when a load fails, the next default candidate, up to WARM_UP_ATTEMPTS."""
        errors: list[str] = []
        try:
            for _ in range(WARM_UP_ATTEMPTS):
                try:
                    spec = self.engine.resolve(None)  # passes over models that failed to load
                except Exception as exc:
                    errors.append(str(exc))
                    break
                if spec.name in self.warm_failures:
                    break  # every candidate has failed
                try:
                    self.engine.load(spec.name)
                except Exception as exc:  # the server stays up, reports it on /health and per request
                    log.warning("warm-up load of %s failed: %s", spec.name, exc)
                    self.warm_failures[spec.name] = str(exc)
                    errors.append(str(exc))
                    continue
                if errors:
                    log.warning("warm-up: %s is the default model instead", spec.name)
                return
            self.warm_error = "; ".join(errors) or "no model could be loaded"
        finally:
            self.warming = False

    def close(self) -> None:
        """Stop background work and the engine (unloads models)."""
        self._stop.set()
        self.connections.close()
        self.engine.close()


def model_sources(settings: Settings, registered: Optional[RegisteredModels] = None,
                  configured: Optional[ConfiguredSources] = None) -> list:
    """Catalogue sources in priority order: model directories and the external Ollama store (read-only;
    see models/sources.py for the spellings accepted), the managed store, models registered through the API."""
    configured = configured or ConfiguredSources(settings.models_dir, settings.manifests_dir)
    sources = [configured.scan]
    sources.append(lambda: scan_store(managed_store.root_for(settings.data_dir), "store"))
    if registered is not None:
        sources.append(registered.specs)
    return sources


def embedded_default(settings: Settings) -> list[ModelSpec]:
    """The out-of-the-box model; the catalogue asks for it only when every other source is empty."""
    path = ensure_default_model(settings.data_dir)
    return [spec_for_file(Path(path), DEFAULT_MODEL_NAME, "default")]


def build_services(settings: Settings, backend: Optional[Backend] = None) -> Services:
    """Wire the catalogue and engine for `settings`; loads no model yet."""
    if backend is None:
        from ollama_server.engine.llama_backend import LlamaBackend
        backend = LlamaBackend()
    registered = RegisteredModels(Path(settings.data_dir) / "registered.json")
    active = ActiveModel(Path(settings.data_dir) / "active.json")
    configured = ConfiguredSources(settings.models_dir, settings.manifests_dir)
    # A model whose GGUF inspection failed is not chosen as the default (with inspection off, none is known to).
    usable = (lambda spec: not inspect.inspect(spec.path).error) if settings.enable_model_inspection else None
    catalogue = Catalogue(model_sources(settings, registered, configured),
                          fallback=lambda: embedded_default(settings), active=active.get, usable=usable)
    catalogue.refresh()
    # With inspection off nothing reads GGUF headers: the context is default_context_size as configured.
    trained_context = inspect.trained_context if settings.enable_model_inspection else (lambda path: None)
    engine = Engine(catalogue, backend, settings, trained_context=trained_context)
    return Services(settings=settings, catalogue=catalogue, engine=engine, registered=registered, active=active,
                    sources=configured)


def init_app(app: Flask, built: Services) -> None:
    app.extensions[EXTENSION_KEY] = built


def services() -> Services:
    """The Services of the current app."""
    return current_app.extensions[EXTENSION_KEY]
