"""Builds the monitoring pieces from settings: the metrics store, the alert rules and channels, the Monitor."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Optional

from ollama_server import paths
from ollama_server.monitoring.alert_rules import AlertingConfig
from ollama_server.monitoring.alert_rules import load_alerting
from ollama_server.monitoring.alert_rules import load_rules
from ollama_server.monitoring.alerts import Transition
from ollama_server.monitoring.collector import Monitor
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.host import HostReader
from ollama_server.monitoring.notify import Dispatcher
from ollama_server.monitoring.notify import channels_from
from ollama_server.settings import Settings
from ollama_server.settings import SettingsError
from ollama_server.storage.alert_events import AlertHistory
from ollama_server.storage.alert_silences import AlertSilences
from ollama_server.storage.metrics import MetricsStore

log = logging.getLogger(__name__)


def _chosen(explicit: str, name: str, fallback: str = "") -> str:
    """The explicit file, else config/<name> when present, else the fallback."""
    if explicit:
        return explicit
    candidate = paths.CONFIG_DIR / name
    return str(candidate) if candidate.exists() else fallback


def load_alert_config(settings: Settings) -> tuple[tuple, AlertingConfig]:
    """Rules and channels from the configured files; an invalid file is a SettingsError naming it."""
    rules_file = _chosen(settings.alert_rules_file, "alerts.yaml", str(paths.CONFIG_DIR / "alerts.example.yaml"))
    channels_file = _chosen(settings.alert_channels_file, "alerting.yaml")
    try:
        rules = load_rules(rules_file) if rules_file else ()
        channels = load_alerting(channels_file) if channels_file else AlertingConfig()
    except (OSError, ValueError) as exc:
        raise SettingsError(f"alert configuration: {exc}") from None
    return rules, channels


def metrics_db_path(settings: Settings) -> str:
    """The SQLite file of metrics, alert history and silences."""
    return settings.metrics_db or str(Path(settings.data_dir) / "metrics.db")


def to_notify(transitions: list[Transition], silences: AlertSilences) -> list[Transition]:
    """The transitions to hand to the channels: a silenced or acknowledged alert's firing, escalation or
    repeat is held back; a resolution always goes out (and ends the alert's acknowledgements)."""
    chosen = []
    for t in transitions:
        if t.new == "resolved":
            silences.close_acknowledgements(t.rule.name, t.labels, at=t.at)
            chosen.append(t)
        elif silences.state_of(t.rule.name, t.labels, now=t.at, started_at=t.started_at) is None:
            chosen.append(t)
    return chosen


def build_monitoring(settings: Settings, engine: Any, gpu: GpuReader, clock: Callable[[], float] = time.time,
                     silences: Optional[AlertSilences] = None) -> tuple[Monitor, Dispatcher, AlertHistory]:
    """The Monitor (not started), the alert dispatcher it feeds and the alert history (same DB file).
    Silences live in that file too: without `silences`, one is opened on it for the delivery filter."""
    db = metrics_db_path(settings)
    store = MetricsStore(db, clock, raw_window_s=settings.metrics_raw_retention_hours * 3600,
                         rollup_window_s=settings.metrics_rollup_retention_days * 86400,
                         busy_timeout_s=settings.metrics_busy_timeout)
    history = AlertHistory(db, clock, busy_timeout_s=settings.metrics_busy_timeout)
    rules, channels = load_alert_config(settings)
    dispatcher = Dispatcher(channels_from(channels))
    if silences is None:
        silences = AlertSilences(db, clock, busy_timeout_s=settings.metrics_busy_timeout)

    def deliver(transitions: list[Transition]) -> None:
        # Recorded first: /api/alerts lists a transition even when every receiver is down, or it is silenced.
        # record() never raises for a locked or full database; dispatch() never waits for a receiver.
        history.record(transitions)
        notify = to_notify(transitions, silences)
        if notify:
            dispatcher.dispatch(notify)

    monitor = Monitor(engine, gpu, HostReader(data_dir=settings.data_dir, clock=clock), store, rules,
                      on_transitions=deliver, clock=clock, history=history)
    return monitor, dispatcher, history


def build_monitor(settings: Settings, engine: Any, gpu: GpuReader) -> tuple[Monitor, Dispatcher]:
    """The Monitor (not started) and the alert dispatcher it feeds (see build_monitoring)."""
    monitor, dispatcher, _ = build_monitoring(settings, engine, gpu)
    return monitor, dispatcher
