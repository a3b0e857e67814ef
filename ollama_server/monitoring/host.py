"""Host samples through psutil: CPU, load, memory, swap, the data dir's disk and this process."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)


def _default_psutil() -> Any:
    try:
        import psutil  # imported lazily so importing this module costs nothing when psutil is injected
    except ImportError:
        return None
    return psutil


def _default_data_dir() -> str:
    # Same default as settings.data_dir; the factory passes the real one.
    return os.environ.get("OLLAMA_SERVER_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share",
                                                                  "ollama_server")


@dataclass(frozen=True)
class HostSample:
    """The machine and this process at one moment (wall clock `at`); None where psutil cannot say."""

    at: float
    cpu_percent: Optional[float] = None           # 0–100, all cores, since the previous read
    cpu_per_core_percent: Optional[tuple[float, ...]] = None
    cpu_count: Optional[int] = None
    load_average: Optional[tuple[float, float, float]] = None  # 1, 5, 15 min
    memory_used_bytes: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    memory_available_bytes: Optional[int] = None
    memory_percent: Optional[float] = None
    swap_used_bytes: Optional[int] = None
    swap_total_bytes: Optional[int] = None
    swap_percent: Optional[float] = None
    disk_path: Optional[str] = None
    disk_used_bytes: Optional[int] = None
    disk_total_bytes: Optional[int] = None
    disk_free_bytes: Optional[int] = None
    disk_percent: Optional[float] = None
    process_rss_bytes: Optional[int] = None
    process_threads: Optional[int] = None
    process_open_fds: Optional[int] = None
    process_uptime_seconds: Optional[float] = None
    boot_uptime_seconds: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        for key in ("cpu_per_core_percent", "load_average"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


class HostReader:
    """Reads the host through a psutil module (injectable); each field degrades to None, never raises.

    psutil's first cpu_percent(interval=None) has no baseline and returns 0.0, and psutil ≥ 6 keeps
    that baseline per thread. So the constructing thread is primed here, and a thread's first read()
    primes that thread and reports cpu None (unknown) rather than a fake 0.0; later reads cover the
    time since that thread's previous read. interval=None never blocks a request or the scheduler.
    """

    def __init__(self, psutil_module: Any = None, data_dir: Optional[str] = None,
                 clock: Callable[[], float] = time.time, per_core: bool = True, pid: Optional[int] = None):
        self._psutil = psutil_module if psutil_module is not None else _default_psutil()
        self.available = self._psutil is not None
        self.reason = "" if self.available else "psutil is not installed"
        self.data_dir = data_dir or _default_data_dir()
        self.clock = clock
        self.per_core = per_core
        self._lock = threading.Lock()
        self._primed: set[int] = set()  # thread idents whose cpu_percent baseline is set
        self._process = None
        if self.available:
            self._process = self._call(self._psutil.Process, pid if pid is not None else os.getpid())
            self._prime()

    def _prime(self) -> None:
        self._call(self._psutil.cpu_percent, interval=None)
        if self.per_core:
            self._call(self._psutil.cpu_percent, interval=None, percpu=True)
        self._primed.add(threading.get_ident())

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One psutil call; any error (AccessDenied in containers, missing /proc files) -> None."""
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # psutil raises its own, OSError and NotImplementedError per platform
            log.debug("%s: %s", getattr(function, "__name__", function), exc)
            return None

    def read(self) -> HostSample:
        """One HostSample; CPU percentages cover the time since the previous read (or construction)."""
        ps = self._psutil
        now = self.clock()
        if ps is None:
            return HostSample(at=now)
        cpu = cores = None
        with self._lock:
            if threading.get_ident() not in self._primed:
                self._prime()
            else:
                cpu = self._call(ps.cpu_percent, interval=None)
                cores = self._call(ps.cpu_percent, interval=None, percpu=True) if self.per_core else None
        memory = self._call(ps.virtual_memory)
        swap = self._call(ps.swap_memory)
        disk = self._disk()
        load = self._call(getattr(ps, "getloadavg", None) or os.getloadavg)
        boot = self._call(ps.boot_time)
        process = self._process_fields(now)
        return HostSample(
            at=now, cpu_percent=_float(cpu), cpu_per_core_percent=None if cores is None else tuple(map(float, cores)),
            cpu_count=self._call(ps.cpu_count),
            load_average=None if load is None else tuple(float(v) for v in load),  # type: ignore[arg-type]
            memory_used_bytes=_get(memory, "used"), memory_total_bytes=_get(memory, "total"),
            memory_available_bytes=_get(memory, "available"), memory_percent=_fget(memory, "percent"),
            swap_used_bytes=_get(swap, "used"), swap_total_bytes=_get(swap, "total"),
            swap_percent=_fget(swap, "percent"), disk_path=self.data_dir if disk is not None else None,
            disk_used_bytes=_get(disk, "used"), disk_total_bytes=_get(disk, "total"),
            disk_free_bytes=_get(disk, "free"), disk_percent=_fget(disk, "percent"),
            boot_uptime_seconds=None if boot is None else max(0.0, now - float(boot)), **process)

    def _disk(self) -> Any:
        """disk_usage of the data dir, or of its nearest existing parent (it may not exist yet)."""
        path = os.path.abspath(self.data_dir)
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        return self._call(self._psutil.disk_usage, path)

    def _process_fields(self, now: float) -> dict[str, Any]:
        proc = self._process
        if proc is None:
            return {}
        memory = self._call(proc.memory_info)
        created = self._call(proc.create_time)
        # num_fds is POSIX-only; Windows has num_handles instead, which we do not report.
        fds = self._call(proc.num_fds) if hasattr(proc, "num_fds") else None
        return {"process_rss_bytes": _get(memory, "rss"), "process_threads": self._call(proc.num_threads),
                "process_open_fds": fds,
                "process_uptime_seconds": None if created is None else max(0.0, now - float(created))}


def _get(value: Any, name: str) -> Optional[int]:
    return None if value is None else int(getattr(value, name))


def _fget(value: Any, name: str) -> Optional[float]:
    return None if value is None else float(getattr(value, name))


def _float(value: Any) -> Optional[float]:
    return None if value is None else float(value)
