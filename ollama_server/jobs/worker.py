"""JobWorker: runs queued jobs on threads, at most max_concurrent_jobs at once, resuming interrupted ones."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Optional

from ollama_server.engine.engine import Engine
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import collect
from ollama_server.jobs.store import JobStore

log = logging.getLogger("ollama_server.jobs")
POLL_S = 2.0  # a job queued by another process is noticed within this; our own wake the worker at once
BUSY_RETRY_S = 1.0  # a job whose request found the queue full (interactive load) tries again after this


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


class JobInterrupted(Exception):
    """The server is stopping: the job goes back to pending and resumes at the next start."""


class JobFailed(Exception):
    """A job cannot go on; the message becomes the job's error."""


@dataclass
class JobContext:
    """What a running job sees: its record, progress reporting and the stop check."""

    job: dict
    store: JobStore
    stopping: threading.Event

    @property
    def job_id(self) -> str:
        return self.job["job_id"]

    @property
    def config(self) -> dict:
        return self.job["config"]

    def check(self) -> None:
        """Raise when the job should stop now: cancelled, or the server is stopping."""
        if self.stopping.is_set():
            raise JobInterrupted()
        if self.store.cancel_requested(self.job_id):
            raise JobCancelled()

    def progress(self, done: int, total: Optional[int]) -> None:
        self.store.progress(self.job_id, done, total)

    def generate(self, engine: Engine, request: GenerateRequest) -> GenerateResult:
        """One whole generation for the job. Interactive load (queue full, a slot not found in time, a model
        reloading) makes it wait and try again rather than fail; a generation cut short by the stop or a cancel
        never counts as an answer."""
        while True:
            self.check()
            try:
                generation = engine.submit(request)
                result = collect(generation.model, generation)
            except (BusyError, RequestTimeoutError):
                self.stopping.wait(BUSY_RETRY_S)
                continue
            except EngineError as exc:
                self.check()  # the engine refused because the server is stopping: resume later
                raise JobFailed(exc.message) from None
            if result.finish_reason == "cancelled":
                self.check()
                raise JobFailed("the model's generation was cancelled (the model was unloaded?)")
            return result


Handler = Callable[[JobContext], dict]


class JobWorker:
    """Claims pending jobs oldest first and runs each on its own thread with its type's handler."""

    def __init__(self, store: JobStore, handlers: dict[str, Handler], max_jobs: Callable[[], int]):
        self.store = store
        self.handlers = handlers
        self.max_jobs = max_jobs
        self._running: dict[str, threading.Thread] = {}
        self._cond = threading.Condition()
        self.stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._running)

    def running(self) -> list[str]:
        with self._cond:
            return list(self._running)

    def start(self) -> list[str]:
        """Put jobs a crash left running back in the queue, then start dispatching; the requeued ids."""
        requeued = self.store.requeue_interrupted()
        for job_id in requeued:
            log.info("job %s was interrupted (restart or crash): it resumes where it stopped", job_id)
        self._thread = threading.Thread(target=self._dispatch, name="job-dispatcher", daemon=True)
        self._thread.start()
        return requeued

    def wake(self) -> None:
        """A job was queued or one ended: look at the queue now."""
        with self._cond:
            self._cond.notify_all()

    def _dispatch(self) -> None:
        while not self.stopping.is_set():
            with self._cond:
                if len(self._running) >= max(1, self.max_jobs()):
                    self._cond.wait(POLL_S)
                    continue
            try:
                job = self.store.claim_next(tuple(self.handlers))
            except Exception:  # a locked or broken queue file: try again at the next poll
                log.exception("could not read the job queue")
                job = None
            if job is None:
                with self._cond:
                    self._cond.wait(POLL_S)
                continue
            thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job['job_id']}", daemon=True)
            with self._cond:
                self._running[job["job_id"]] = thread
            thread.start()

    def _run(self, job: dict) -> None:
        job_id = job["job_id"]
        ctx = JobContext(job=job, store=self.store, stopping=self.stopping)
        log.info("job %s (%s, model %s) started", job_id, job["type"], job["model_id"])
        try:
            result = self.handlers[job["type"]](ctx)
            self.store.finish(job_id, "done", result=result)
            log.info("job %s done: %s", job_id, _brief(result))
        except JobInterrupted:
            log.info("job %s interrupted by the stop; it resumes at the next start", job_id)
        except Exception as exc:
            if self.stopping.is_set():  # whatever the stop broke (a generation cut off): resume, never fail
                log.info("job %s interrupted by the stop (%s); it resumes at the next start", job_id, exc)
            else:
                self._end_failed(job_id, exc)
        finally:
            with self._cond:
                self._running.pop(job_id, None)
                self._cond.notify_all()

    def _end_failed(self, job_id: str, exc: Exception) -> None:
        """A cancel, a JobFailed (its message is the error) or anything else (a failure, never left running)."""
        if isinstance(exc, JobCancelled):
            self.store.finish(job_id, "cancelled", error="cancelled")
            log.info("job %s cancelled", job_id)
        elif isinstance(exc, JobFailed):
            self.store.finish(job_id, "failed", error=str(exc))
            log.warning("job %s failed: %s", job_id, exc)
        else:
            log.error("job %s failed", job_id, exc_info=exc)
            self.store.finish(job_id, "failed", error=f"{type(exc).__name__}: {exc}")

    def close(self, timeout: float = 10.0) -> None:
        """Stop dispatching; running jobs stop at their next check and are resumed at the next start."""
        self.stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        for thread in list(self._running.values()):
            thread.join(timeout)
        # A job that did not reach a check in time is still "running" in the file: the next start requeues it.


def _brief(result: Any) -> str:
    if not isinstance(result, dict):
        return str(result)[:200]
    return ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float, str)))[:300]
