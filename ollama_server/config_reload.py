"""Reloading the settings file while serving: on SIGHUP or when the file changes, a valid file is applied without
dropping in-flight requests (models reload in the background); an invalid one is refused, the running config kept."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import fields
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import Optional

from ollama_server.settings import Settings
from ollama_server.settings import SettingsError
from ollama_server.settings import load_settings

log = logging.getLogger(__name__)
# Read once at start (the socket, the directories and files opened then, the model sources): a change waits
# for a restart and says so.
RESTART_ONLY = frozenset({"host", "port", "data_dir", "base_dir", "datasets_dir", "metrics_db", "models_dir",
                          "manifests_dir", "alert_rules_file", "alert_channels_file", "metrics_interval",
                          "metrics_maintenance_interval"})


def _stamp(path: Path) -> Optional[tuple[int, int]]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class ConfigReloader:
    """Applies `path` to the running services: `reload()` on demand (SIGHUP), `check()` when the file changed."""

    def __init__(self, services: Any, path: str | Path):
        self.services = services
        self.path = Path(path)
        self._stamp = _stamp(self.path)
        self._lock = threading.Lock()
        self.last: dict[str, Any] = {"status": "not reloaded"}

    def check(self) -> Optional[dict[str, Any]]:
        """Reload if the file's modification time or size changed since the last look (an APScheduler job)."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return None
        try:
            return self.reload("file changed")
        except Exception:  # a failed apply must not stop the next look
            log.exception("config reload failed")
            return None

    def reload_in_background(self, *_signal_args: Any) -> None:
        """A signal handler's way in: the reload runs on its own thread, never inside the handler."""
        threading.Thread(target=self.reload, name="config-reload", daemon=True).start()

    def reload(self, reason: str = "SIGHUP") -> dict[str, Any]:
        """Read and validate the file; apply what may change while serving; report what waits for a restart."""
        with self._lock:
            self._stamp = _stamp(self.path)
            try:
                new = load_settings(self.path)
            except (SettingsError, OSError, ValueError) as exc:
                log.error("config reload (%s) refused, the running configuration is kept: %s", reason, exc)
                self.last = {"status": "rejected", "reason": reason, "error": str(exc)}
                return self.last
            current: Settings = self.services.settings
            changed = [f.name for f in fields(Settings) if getattr(new, f.name) != getattr(current, f.name)]
            waiting = [name for name in changed if name in RESTART_ONLY]
            applied = [name for name in changed if name not in RESTART_ONLY]
            if applied:
                kept = {name: getattr(current, name) for name in RESTART_ONLY}
                self.services.apply_settings(replace(new, **kept))  # which sets log_level too
            if waiting:
                log.warning("config reload (%s): %s change only at the next restart", reason, ", ".join(waiting))
            log.info("config reload (%s): applied %s", reason, ", ".join(applied) or "nothing (no change)")
            self.last = {"status": "applied", "reason": reason, "applied": applied, "restart_required": waiting}
            return self.last


def config_path() -> Path:
    """The settings file the process was started with (the same rule as at start)."""
    from ollama_server import paths
    return Path(os.path.abspath(paths.service_config_path()))
