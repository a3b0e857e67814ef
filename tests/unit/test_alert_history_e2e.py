"""Alert history in SQLite, and alerts end to end on an injected clock: fake NVML temperature -> rule ->
one firing then one resolved Alertmanager v4 body at a real local webhook receiver -> /api/alerts."""
from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alerts import Transition
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.setup import build_monitoring
from ollama_server.services import EXTENSION_KEY
from ollama_server.storage.alert_events import AlertHistory
from tests.fakes.nvml import FakeNvml

RULE = Rule(name="gpu_temperature", metric="gpu_temperature", warning=80, critical=90, duration_s=60)


def transition(old, new, at, severity="warning", reason="fired", value=85.0):
    return Transition(old, new, severity, RULE, (("gpu", "0"),), value, at, 1000.0, reason)


def test_history_records_lists_newest_first_and_knows_what_is_active(tmp_path):
    history = AlertHistory(tmp_path / "metrics.db")
    assert history.recent() == [] and history.active() == []
    assert history.record([transition("pending", "firing", 1060.0)]).rows == 1
    assert [e["new"] for e in history.active()] == ["firing"]
    history.record([transition("firing", "resolved", 1100.0, reason="resolved", value=50.0)])
    events = history.recent(10)
    assert [e["new"] for e in events] == ["resolved", "firing"]
    assert events[1]["labels"] == {"gpu": "0"} and events[1]["threshold"] == 80 and events[1]["time"]
    assert history.active() == []
    assert len(history.recent(1)) == 1


def test_a_locked_history_never_raises(tmp_path):
    path = tmp_path / "metrics.db"
    history = AlertHistory(path, busy_timeout_s=0.05)
    history.record([transition("pending", "firing", 1060.0)])
    holder = sqlite3.connect(str(path), timeout=0.05)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = history.record([transition("firing", "resolved", 1100.0, reason="resolved")])
        assert not result.ok and result.error == "locked"
        assert history.status()["state"] == "locked"
        assert [e["new"] for e in history.recent()] == ["firing"]  # WAL: readers still read
    finally:
        holder.rollback()
        holder.close()
    assert history.record([transition("firing", "resolved", 1100.0, reason="resolved")]).ok
    assert history.status()["state"] == "ok"
    assert [e["new"] for e in history.recent()] == ["resolved", "firing"]


class Receiver:
    """A real HTTP webhook receiver on 127.0.0.1:0 that keeps every JSON body."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def test_alert_fires_after_its_duration_and_resolves_end_to_end(make_app, tmp_path, receiver):
    rules = tmp_path / "alerts.yaml"
    rules.write_text("alerts:\n  gpu_temperature:\n    warning: 80\n    critical: 90\n    duration: 60\n")
    channels = tmp_path / "alerting.yaml"
    channels.write_text(f'alerting:\n  webhooks:\n    - url: "{receiver.url}"\n      events: ["warning", "critical"]\n'
                        '      name: test-hook\n')
    nvml = FakeNvml("two_unequal")
    app = make_app(nvml=nvml, alert_rules_file=str(rules), alert_channels_file=str(channels))
    svc = app.extensions[EXTENSION_KEY]
    now = [1_800_000_000.0]
    monitor, dispatcher, history = build_monitoring(svc.settings, svc.engine, GpuReader(nvml=nvml),
                                                    clock=lambda: now[0])
    # The app reads these; the app's own monitor (real clock, same files) is set aside.
    replaced = svc.alerts
    svc.monitor, svc.alerts, svc.alert_history = monitor, dispatcher, history
    client = app.test_client()
    try:
        nvml.devices[0]["temp"] = 85  # above warning (80), under critical (90)
        start = now[0]
        monitor.collect_once()                 # t: pending
        now[0] = start + 59
        monitor.collect_once()                 # t + duration - 1: still pending
        assert dispatcher.wait_idle(10)
        assert receiver.bodies == [] and history.recent() == []
        now[0] = start + 60
        monitor.collect_once()                 # t + duration: fires
        assert dispatcher.wait_idle(10)
        assert len(receiver.bodies) == 1
        fired = receiver.bodies[0]
        assert fired["version"] == "4" and fired["status"] == "firing" and fired["receiver"] == "test-hook"
        assert fired["groupLabels"] == {"alertname": "gpu_temperature"}
        [alert] = fired["alerts"]
        assert alert["labels"] == {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}
        assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["fingerprint"]
        active = client.get("/api/alerts").get_json()
        assert [(a["alert"], a["labels"], a["severity"]) for a in active["active"]] == [
            ("gpu_temperature", {"gpu": "0"}, "warning")]
        dashboard = client.get("/api/metrics/dashboard").get_json()
        assert dashboard["alerts"]["count"] == 1

        now[0] = start + 61
        monitor.collect_once()                 # still firing: nothing new
        nvml.devices[0]["temp"] = 50
        now[0] = start + 70
        monitor.collect_once()                 # back to normal: resolved
        assert dispatcher.wait_idle(10)
        assert len(receiver.bodies) == 2
        resolved = receiver.bodies[1]
        assert resolved["status"] == "resolved" and resolved["alerts"][0]["status"] == "resolved"
        assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
        body = client.get("/api/alerts").get_json()
        assert body["active"] == []
        assert [(e["alert"], e["new"], e["reason"]) for e in body["history"]] == [
            ("gpu_temperature", "resolved", "resolved"), ("gpu_temperature", "firing", "fired")]
        assert body["history"][1]["at"] == start + 60 and body["history"][0]["at"] == start + 70
    finally:
        dispatcher.close(wait=False)
        replaced.close(wait=False)


def test_old_transitions_are_pruned_but_each_alerts_last_one_is_kept(tmp_path):
    """Pruning keeps active() right: an alert still firing from long ago stays listed."""
    from ollama_server.monitoring.alert_rules import Rule
    from ollama_server.monitoring.alerts import Transition
    from ollama_server.storage.alert_events import AlertHistory

    def transition(alert: str, new: str, at: float) -> Transition:
        rule = Rule(name=alert, metric="cpu_usage", warning=1.0)
        return Transition(old="pending" if new == "firing" else "firing", new=new, severity="warning", rule=rule,
                          labels=(), value=2.0, at=at, started_at=at, reason="fired" if new == "firing" else new)
    history = AlertHistory(tmp_path / "m.db")
    assert history.record([transition("old_fired", "firing", 10.0), transition("flapped", "firing", 11.0),
                           transition("flapped", "resolved", 12.0)])
    assert history.prune(before=100.0)
    left = {(e["alert"], e["new"]) for e in history.recent(10)}
    assert left == {("old_fired", "firing"), ("flapped", "resolved")}
    assert [e["alert"] for e in history.active()] == ["old_fired"]
