"""Services: the long-lived objects of one app, built by the factory and reached via services()."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import Optional

from apscheduler.schedulers.background import BackgroundScheduler

from flask import Flask
from flask import current_app

from ollama_server import log_format
from ollama_server.connection_watch import ConnectionWatch
from ollama_server.engine.backend import Backend
from ollama_server.engine.engine import Engine
from ollama_server.jobs.service import Jobs
from ollama_server.jobs.service import build_jobs
from ollama_server.model_benchmark import ModelBenchmarks
from ollama_server.model_benchmark import build_benchmarks
from ollama_server.models import managed_store
from ollama_server.models.active import ActiveModel
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.catalogue import spec_for_file
from ollama_server.models.default_model import DEFAULT_MODEL_NAME
from ollama_server.models.default_model import ensure_default_model
from ollama_server.models.inspect import Inspector
from ollama_server.models.managed_store import ManagedStore
from ollama_server.models.partials import expire_partials
from ollama_server.models.pull_jobs import PullJobs
from ollama_server.models.pull_jobs import for_store as pull_jobs_for
from ollama_server.models.registered import RegisteredModels
from ollama_server.models.sources import ConfiguredSources
from ollama_server.models.store import ModelStore
from ollama_server.monitoring.collector import Monitor
from ollama_server.monitoring.exporter import Exporter
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.notify import Dispatcher
from ollama_server.monitoring.setup import build_monitoring
from ollama_server.monitoring.setup import metrics_db_path
from ollama_server.runtime_config.manager import ConfigManager
from ollama_server.runtime_config.manager import for_services as config_for
from ollama_server.scheduler import build_scheduler
from ollama_server.settings import Settings
from ollama_server.storage.alert_events import AlertHistory
from ollama_server.storage.alert_silences import AlertSilences

EXTENSION_KEY = "ollama_server"
CONFIG_CHECK_INTERVAL_S = 2.0  # how soon an edited settings file is applied
PARTIAL_EXPIRY_INTERVAL_S = 300.0  # how often the background loop looks for abandoned partial downloads
WARM_UP_ATTEMPTS = 3  # default candidates warm-up tries before it gives up (each failed load costs time)
log = logging.getLogger(__name__)


@dataclass
class Services:
    """Every long-lived object of one app, built once by the factory: settings, the model store (catalogue,
    inspector, managed store, registrations, active model), the engine, the GPU reader, the scheduler."""

    settings: Settings
    store: ModelStore
    engine: Engine
    gpu: GpuReader = field(default_factory=GpuReader)  # NVML is touched on first read, never at build time
    monitor: Optional[Monitor] = None                    # collections, the metrics store, alert evaluation
    alerts: Optional[Dispatcher] = None                  # delivers alert transitions to their channels
    exporter: Optional[Exporter] = None                  # /metrics: fed by the monitor, reads its last collection
    alert_history: Optional[AlertHistory] = None         # every alert transition, in the metrics DB file
    silences: Optional[AlertSilences] = None             # alert silences and acknowledgements, same DB file
    benchmarks: Optional[ModelBenchmarks] = None         # the dashboard's per-model benchmark runs
    pulls: Optional[PullJobs] = None                     # the dashboard's background pulls
    config: Optional[ConfigManager] = None               # runtime configuration: versions, presets, rollback
    jobs: Optional[Jobs] = None                          # eval / data-gen / conversion jobs, power profiles
    reloader: Any = None                                 # config_reload.ConfigReloader, made by start()
    scheduler: BackgroundScheduler = field(default_factory=build_scheduler)
    connections: ConnectionWatch = field(default_factory=ConnectionWatch)  # clients that hang up
    warming: bool = False
    warm_error: Optional[str] = None
    warm_failures: dict = field(default_factory=dict)  # model name -> load error, of candidates warm-up passed over
    # Set when the server begins to stop: endless streams (dashboard websockets) end, requests finish.
    stopping: threading.Event = field(default_factory=threading.Event)
    _started: bool = field(default=False, repr=False)

    @property
    def catalogue(self) -> Catalogue:
        return self.store.catalogue

    @property
    def sources(self) -> ConfiguredSources:
        return self.store.sources

    def apply_settings(self, new: Settings) -> None:
        """Swap the settings every request reads, apply their log level and format, reload models with them."""
        self.settings = new
        # Here, so that the settings-file reload and the dashboard's configure change the level alike.
        log_format.apply_log_level(new.log_level)
        log_format.configure_logging(new, self.alerts.channels if self.alerts is not None else ())
        self.engine.reconfigure(new)

    def start(self, warm: bool = True) -> None:
        """Schedule and start background work (warm-up, keep-alive, partial expiry); called by the serving
        entry point only, once."""
        if self._started:
            return
        self._started = True
        if warm:
            self.warming = True  # before the job runs: /health says "loading" from the first request
            self.scheduler.add_job(self._warm_up, id="warm-up", name="load the default model")
        # Checked once a second; keep_alive granularity finer than that is not useful.
        self.scheduler.add_job(self._unload_expired, "interval", seconds=1, id="keep-alive",
                               name="unload idle models")
        if self.monitor is not None:
            self.scheduler.add_job(self._collect, "interval", seconds=self.settings.metrics_interval,
                                   next_run_time=datetime.now(timezone.utc), id="collect",
                                   name="collect metrics and evaluate alerts")
            self.scheduler.add_job(self.monitor.maintain, "interval",
                                   seconds=self.settings.metrics_maintenance_interval, id="metrics-maintenance",
                                   name="roll up and prune the metrics store")
        # Once at start, then every few minutes: the max age is counted in hours, and each look lists blobs/.
        self.scheduler.add_job(self._expire_partials, "interval", seconds=PARTIAL_EXPIRY_INTERVAL_S,
                               next_run_time=datetime.now(timezone.utc), id="partial-expiry",
                               name="delete abandoned partial downloads")
        self.scheduler.start()
        from ollama_server.config_reload import ConfigReloader
        from ollama_server.config_reload import config_path
        self.reloader = ConfigReloader(self, config_path())
        self.scheduler.add_job(self.reloader.check, "interval", seconds=CONFIG_CHECK_INTERVAL_S, id="config-file",
                               name="apply the settings file when it changes")
        if self.jobs is not None:
            from ollama_server.log_files import install_log_files  # the serving process only, never tests' apps
            install_log_files(self.jobs.paths.logs_dir, self.settings.log_level)
            self.jobs.start()

    def _collect(self) -> None:
        try:
            self.monitor.collect_once()
        except Exception:  # a broken reader must not stop the next collection
            log.exception("metrics collection failed")

    def _unload_expired(self) -> None:
        try:
            self.engine.unload_expired()
        except Exception:
            log.exception("keep-alive check failed")

    def _expire_partials(self) -> None:
        """Delete the managed store's partial downloads older than partial_download_max_age."""
        try:
            expire_partials(self.store.managed.root / "blobs", self.settings.partial_download_max_age)
        except Exception:
            log.exception("partial download expiry failed")

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
        self.stopping.set()
        if self.jobs is not None:
            self.jobs.close()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.connections.close()
        if self.alerts is not None:
            self.alerts.close(wait=False)
        self.engine.close()


def embedded_default(settings: Settings) -> list[ModelSpec]:
    """The out-of-the-box model; the catalogue asks for it only when every other source is empty."""
    path = ensure_default_model(settings.data_dir)
    return [spec_for_file(Path(path), DEFAULT_MODEL_NAME, "default")]


def build_store(settings: Settings) -> ModelStore:
    """The model store for `settings`: catalogue over every source, inspector, managed store, registrations."""
    data_dir = Path(settings.data_dir)
    registered = RegisteredModels(data_dir / "registered.json")
    active = ActiveModel(data_dir / "active.json")
    configured = ConfiguredSources(settings.models_dir, settings.manifests_dir)
    managed = ManagedStore(managed_store.root_for(data_dir))
    store = ModelStore(Inspector(), managed, registered, active, configured, lambda: embedded_default(settings),
                       inspection=settings.enable_model_inspection)
    store.refresh()
    return store


def build_services(settings: Settings, backend: Optional[Backend] = None, nvml: Any = None) -> Services:
    """Wire the store, engine and GPU reader for `settings`; loads no model, starts nothing, touches no NVML.
    `backend` and `nvml` replace llama.cpp and pynvml (tests pass fakes here, not into app.extensions)."""
    if backend is None:
        from ollama_server.engine.llama_backend import LlamaBackend
        backend = LlamaBackend()
    store = build_store(settings)
    engine = Engine(store.catalogue, backend, settings, trained_context=store.trained_context,
                    broken_file=store.broken_file)
    gpu = GpuReader(nvml=nvml)
    silences = AlertSilences(metrics_db_path(settings), busy_timeout_s=settings.metrics_busy_timeout)
    monitor, alerts, alert_history = build_monitoring(settings, engine, gpu, silences=silences)
    exporter = Exporter.for_monitor(monitor)  # registers its observe() as a record listener
    made = Services(settings=settings, store=store, engine=engine, gpu=gpu, monitor=monitor, alerts=alerts,
                    alert_history=alert_history, exporter=exporter, silences=silences,
                    benchmarks=build_benchmarks(engine, settings, metrics_db_path(settings)),
                    pulls=pull_jobs_for(store, settings), jobs=build_jobs(settings, engine, store, gpu))
    made.config = config_for(made, metrics_db_path(settings))  # reads and swaps the built Services' settings
    return made


def init_app(app: Flask, built: Services) -> None:
    app.extensions[EXTENSION_KEY] = built


def services() -> Services:
    """The Services of the current app."""
    return current_app.extensions[EXTENSION_KEY]
