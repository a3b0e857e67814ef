"""Our AlertmanagerChannel against a real Alertmanager (Debian's prometheus-alertmanager binary): a posted
firing alert shows in its GET /api/v2/alerts. Unit speed: it starts Alertmanager, not our server."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alerts import Transition
from ollama_server.monitoring.notify import AlertmanagerChannel
from ollama_server.monitoring.notify import Retry
from tests.conftest import free_port

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(BINARY is None, reason="prometheus-alertmanager is not installed "
                                                       "(apt-get install prometheus-alertmanager)")
CONFIG = """route:
  receiver: blackhole
  group_wait: 1s
receivers:
  - name: blackhole
"""


def poll(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"alertmanager exited with {process.returncode} while waiting for {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_firing_alert_reaches_a_real_alertmanager(tmp_path):
    (tmp_path / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "alertmanager.log", "w")
    process = subprocess.Popen(
        [BINARY, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            try:
                return requests.get(f"{base}/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        poll(ready, 30, "alertmanager to be ready", process)

        rule = Rule(name="gpu_temperature", metric="gpu_temperature", warning=80, critical=90, duration_s=60)
        now = time.time()
        fired = Transition("pending", "firing", "warning", rule, (("gpu", "0"),), 85.0, now, now - 60, "fired")
        AlertmanagerChannel(base, external_url="http://127.0.0.1:11435", retry=Retry(attempts=2)).notify(fired)

        def listed():
            alerts = requests.get(f"{base}/api/v2/alerts", timeout=2).json()
            return [a for a in alerts if a["labels"].get("alertname") == "gpu_temperature"]
        [alert] = poll(listed, 15, "the alert in /api/v2/alerts", process)
        assert alert["labels"] == {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}
        assert alert["status"]["state"] in ("active", "unprocessed")
        assert alert["annotations"]["summary"].startswith("gpu_temperature warning")
        assert alert["generatorURL"] == "http://127.0.0.1:11435"

        resolved = Transition("firing", "resolved", "warning", rule, (("gpu", "0"),), 50.0, time.time(), now - 60,
                              "resolved")
        AlertmanagerChannel(base, retry=Retry(attempts=2)).notify(resolved)
        # A resolved alert (endsAt in the past) leaves the active list.
        poll(lambda: not [a for a in listed() if a["status"]["state"] == "active"], 15, "the alert to resolve",
             process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
