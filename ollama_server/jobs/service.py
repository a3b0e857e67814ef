"""Jobs: the queue, its worker and power profiles of one app, wired from settings (Services.jobs)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Optional

from ollama_server.engine.engine import Engine
from ollama_server.jobs.convert_job import run_convert
from ollama_server.jobs.data_gen import run_data_gen
from ollama_server.jobs.eval_run import run_eval
from ollama_server.jobs.paths import JobPaths
from ollama_server.jobs.store import JobStore
from ollama_server.jobs.worker import JobWorker
from ollama_server.models.store import ModelStore
from ollama_server.monitoring.power import PowerProfiles
from ollama_server.settings import Settings

log = logging.getLogger("ollama_server.jobs")


@dataclass
class Jobs:
    """What the companion routes and the dashboard reach: store, paths, worker, power profiles."""

    store: JobStore
    paths: JobPaths
    worker: JobWorker
    power: PowerProfiles
    _started: bool = False

    def submit(self, type: str, model_id: Optional[str], config: dict, name: Optional[str] = None) -> dict:
        """Queue a job and wake the worker."""
        job = self.store.create(type, model_id, config, name=name)
        self.worker.wake()
        return job

    def cancel(self, job_id: str) -> Optional[dict]:
        job = self.store.request_cancel(job_id)
        self.worker.wake()
        return job

    def start(self) -> None:
        """Re-apply the saved power profile, requeue interrupted jobs, start the worker (serving entry only)."""
        if self._started:
            return
        self._started = True
        self.power.apply_saved()
        self.worker.start()

    def close(self, timeout: float = 10.0) -> None:
        self.worker.close(timeout)


def build_jobs(settings: Settings, engine: Engine, store: ModelStore, gpu: Any) -> Jobs:
    """The jobs of one app; creates the base directories, starts nothing."""
    paths = JobPaths.for_settings(settings)
    paths.ensure()
    jobs_store = JobStore(paths.db_path)
    power = PowerProfiles(gpu, Path(settings.data_dir) / "power_profile.json")
    handlers = {
        "eval": lambda ctx: run_eval(ctx, engine, paths),
        "data_gen": lambda ctx: run_data_gen(ctx, engine, paths, settings.shard_max_examples),
        "convert": lambda ctx: run_convert(ctx, store, settings.converter_dir),
    }
    worker = JobWorker(jobs_store, handlers, max_jobs=lambda: power.max_concurrent_jobs)
    return Jobs(store=jobs_store, paths=paths, worker=worker, power=power)
