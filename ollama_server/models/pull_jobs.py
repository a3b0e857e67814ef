"""Background pulls for the dashboard: a pull runs on its own thread and its progress is kept as a job."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from typing import Any
from typing import Callable
from typing import Iterator
from typing import Optional

from ollama_server.models.pull import checked
from ollama_server.models.pull_source import PullError
from ollama_server.models.pull_source import PullPlan
from ollama_server.models.pull_source import plan as plan_pull
from ollama_server.models.url_safety import check_url

log = logging.getLogger(__name__)
KEEP = 20  # finished jobs remembered; a running job is never forgotten
RUNNING, SUCCESS, ERROR = "running", "success", "error"


class PullJobs:
    """`start(source, name)` validates and starts a pull; `get(id)` and `list()` show its progress.

    `pull(plan)` yields Ollama-style progress dicts ({status, digest, total, completed}); `check(url)`, when
    given, refuses a URL before the thread starts (the SSRF guard: PullError 400, or 502 for a host that
    does not resolve)."""

    def __init__(self, pull: Callable[[PullPlan], Iterator[dict]], check: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.time, keep: int = KEEP):
        self._pull = pull
        self._check = check
        self._clock = clock
        self._keep = keep
        self._ids = itertools.count(1)
        self._jobs: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, source: str, name: Optional[str] = None) -> dict[str, Any]:
        """Validate (PullError with an HTTP status, before any thread) and start a pull; the new job."""
        if not isinstance(source, str) or not source.strip():
            raise PullError(400, "source is required: an http(s):// URL or hf://owner/repo/file.gguf")
        if name is not None and not isinstance(name, str):
            raise PullError(400, "name must be a string")
        plan = plan_pull(name or None, source.strip())
        if self._check is not None:
            self._check(plan.url)
        with self._lock:
            if any(job["status"] == RUNNING and job["url"] == plan.url for job in self._jobs.values()):
                raise PullError(409, f"a pull of {source} is already in progress")
            job_id = f"pull-{next(self._ids)}"
            job = {"id": job_id, "source": source.strip(), "name": plan.name, "url": plan.url, "status": RUNNING,
                   "completed": 0, "total": None, "percent": None, "message": "starting",
                   "started_at": self._clock(), "finished_at": None}
            self._jobs[job_id] = job
            self._forget_old()
            thread = threading.Thread(target=self._run, args=(job_id, plan), name=f"pull {plan.name}", daemon=True)
            self._threads[job_id] = thread
        thread.start()
        return self.get(job_id)

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond `keep` (under the lock)."""
        finished = [key for key, job in self._jobs.items() if job["status"] != RUNNING]
        for key in finished[:max(0, len(self._jobs) - self._keep)]:
            del self._jobs[key]
            self._threads.pop(key, None)

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.update(changes)

    def _run(self, job_id: str, plan: PullPlan) -> None:
        try:
            events = self._pull(plan)
            for event in events:
                self._progress(job_id, event)
        except PullError as exc:
            self._finish(job_id, ERROR, exc.message)
        except Exception as exc:  # a disk error or a bug: the job says so instead of dying silently
            log.exception("background pull of %s failed", plan.url)
            self._finish(job_id, ERROR, f"pull failed: {exc}")
        else:
            self._finish(job_id, SUCCESS, "success")

    def _progress(self, job_id: str, event: dict) -> None:
        changes: dict[str, Any] = {"message": str(event.get("status", ""))}
        total, completed = event.get("total"), event.get("completed")
        if isinstance(total, int) and total > 0:
            changes["total"] = total
            if isinstance(completed, int):
                changes["completed"] = completed
                changes["percent"] = round(min(completed, total) / total * 100.0, 1)
        self._update(job_id, **changes)

    def _finish(self, job_id: str, status: str, message: str) -> None:
        changes: dict[str, Any] = {"status": status, "message": message, "finished_at": self._clock()}
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            if status == SUCCESS:
                changes["percent"] = 100.0
                if job["total"]:
                    changes["completed"] = job["total"]
            job.update(changes)
            self._threads.pop(job_id, None)
            self._forget_old()

    def get(self, job_id: str) -> Optional[dict[str, Any]]:
        """A copy of one job, or None when unknown (or forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return dict(job) if job is not None else None

    def list(self) -> list[dict[str, Any]]:
        """Copies of the remembered jobs, most recent first."""
        with self._lock:
            return [dict(job) for job in reversed(self._jobs.values())]

    def wait(self, job_id: str, timeout: Optional[float] = None) -> bool:
        """Block until the job's thread is done (tests, shutdown); True when it is."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()


def for_store(store: Any, settings: Any) -> PullJobs:
    """The app's PullJobs: pulls into the model store with the configured SSRF policy and partial expiry."""
    allow_private = bool(settings.allow_private_pull_urls)

    def pull(plan: PullPlan) -> Iterator[dict]:
        return store.pull(plan, allow_private=allow_private, insecure=False,
                          partial_max_age=settings.partial_download_max_age)
    return PullJobs(pull, check=lambda url: checked(lambda u: check_url(u, allow_private), url))
