"""Alertmanager shapes: fingerprints, group keys, the webhook v4 body and the /api/v2/alerts body."""
from __future__ import annotations

from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alertmanager import ZERO_TIME
from ollama_server.monitoring.alertmanager import api_v2_alerts
from ollama_server.monitoring.alertmanager import fingerprint
from ollama_server.monitoring.alertmanager import group_key
from ollama_server.monitoring.alertmanager import rfc3339
from ollama_server.monitoring.alertmanager import webhook_payload
from ollama_server.monitoring.alerts import evaluate

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
GPU = Rule(name="gpu_temperature", metric="gpu_temperature", warning=80, critical=85, duration_s=180)
SERIES = ("gpu_temperature", (("gpu", "0"),))
V4_KEYS = {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
           "commonAnnotations", "externalURL", "notification_reason", "alerts"}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def by_hand(labels: dict[str, str]) -> str:
    """monitoring.md §1.2 spelled out: FNV-1a 64 (offset 14695981039346656037, prime 1099511628211)."""
    h = 14695981039346656037
    for name in sorted(labels):
        for byte in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            h ^= byte
            h = (h * 1099511628211) % 2 ** 64
    return format(h, "016x")


def script(*steps: tuple[float, float]) -> list:
    """Transitions of GPU over (seconds after T0, value) steps."""
    states: dict = {}
    out = []
    for dt, value in steps:
        states, new = evaluate([GPU], {SERIES: value}, states, T0 + dt)
        out += new
    return out


def test_it_fingerprints_labels_as_prometheus_does():
    labels = {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}
    assert fingerprint(labels) == by_hand(labels)
    assert len(fingerprint(labels)) == 16
    # prometheus/common model/signature_test.go vectors (LabelSet.Fingerprint).
    assert fingerprint({}) == format(14695981039346656037, "016x")
    assert fingerprint({"first_name": "electro", "occupation": "robot", "manufacturer": "westinghouse"}) == format(
        5911716720268894962, "016x")
    assert fingerprint({"a": "bb", "b": "c"}) != fingerprint({"a": "b", "bb": "c"})


def test_it_builds_group_keys_like_alertmanager():
    assert group_key({"alertname": "Test", "job": "x"}) == '{}:{alertname="Test", job="x"}'
    assert group_key({}) == "{}:{}"


def test_it_formats_times_as_rfc3339_utc():
    assert rfc3339(T0) == "2026-09-21T14:13:20Z"
    assert rfc3339(T0 + 0.25) == "2026-09-21T14:13:20.25Z"


def test_it_sends_a_firing_alert_in_the_v4_shape_with_zero_ends_at():
    (fired,) = script((0, 82), (180, 82))
    body = webhook_payload([fired], receiver="slack", external_url="http://host:11435/dashboard")
    assert set(body) == V4_KEYS
    assert (body["version"], body["status"], body["receiver"], body["truncatedAlerts"]) == ("4", "firing", "slack", 0)
    assert body["groupLabels"] == {"alertname": "gpu_temperature"}
    assert body["groupKey"] == '{}:{alertname="gpu_temperature"}'
    assert body["commonLabels"] == {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}
    assert body["externalURL"] == "http://host:11435/dashboard"
    (alert,) = body["alerts"]
    assert set(alert) == ALERT_KEYS
    assert alert["status"] == "firing"
    assert alert["startsAt"] == rfc3339(T0) and alert["endsAt"] == ZERO_TIME == "0001-01-01T00:00:00Z"
    assert alert["fingerprint"] == by_hand({"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"})
    assert set(alert["annotations"]) == {"summary", "description"}
    assert "gpu_temperature" in alert["annotations"]["summary"]


def test_it_sends_a_resolved_alert_with_a_real_ends_at_and_the_same_group_key():
    fired, resolved = script((0, 82), (180, 82), (600, 70))
    first = webhook_payload([fired], receiver="r")
    body = webhook_payload([resolved], receiver="r")
    assert body["status"] == "resolved"
    (alert,) = body["alerts"]
    assert alert["endsAt"] == rfc3339(T0 + 600) > alert["startsAt"] == rfc3339(T0)
    assert alert["fingerprint"] == first["alerts"][0]["fingerprint"]
    assert body["groupKey"] == first["groupKey"]


def test_it_resolves_the_old_severity_and_fires_the_new_one_on_escalation():
    fired, escalated = script((0, 82), (180, 82), (200, 90), (380, 90))
    assert escalated.reason == "escalated"
    body = webhook_payload([escalated], receiver="pagerduty")
    assert body["status"] == "firing"
    assert [(a["status"], a["labels"]["severity"]) for a in body["alerts"]] == [("resolved", "warning"),
                                                                                 ("firing", "critical")]
    assert body["alerts"][0]["fingerprint"] == webhook_payload([fired], "r")["alerts"][0]["fingerprint"]
    assert body["groupLabels"] == {"alertname": "gpu_temperature"}
    assert "severity" not in body["commonLabels"]


def test_it_reports_truncated_alerts():
    transitions = script((0, 82), (180, 82), (200, 90), (380, 90))
    body = webhook_payload(transitions, receiver="r", max_alerts=2)
    assert (len(body["alerts"]), body["truncatedAlerts"]) == (2, 1)


def test_it_posts_firing_alerts_to_the_v2_api_without_ends_at_and_resolved_ones_with_it():
    fired, resolved = script((0, 82), (180, 82), (600, 70))
    (firing,) = api_v2_alerts([fired], generator_url="http://host/dash")
    assert set(firing) == {"labels", "annotations", "startsAt", "generatorURL"}
    assert firing["labels"] == {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}
    (done,) = api_v2_alerts([resolved])
    assert done["endsAt"] == rfc3339(T0 + 600)
