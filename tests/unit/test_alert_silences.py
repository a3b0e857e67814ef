"""Alert silences and acknowledgements: the store on an injected clock, the delivery filter end to end at a
real local webhook receiver (a silenced alert is recorded but not notified; a resolution always goes out),
and the JSON routes."""
from __future__ import annotations

import sqlite3

import pytest

from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.setup import build_monitoring
from ollama_server.monitoring.setup import metrics_db_path
from ollama_server.services import EXTENSION_KEY
from ollama_server.storage.alert_silences import AlertSilences
from tests.fakes.nvml import FakeNvml
from tests.unit.test_alert_history_e2e import Receiver

GPU0 = {"gpu": "0"}


@pytest.fixture
def clock():
    now = [1_800_000_000.0]
    return now


@pytest.fixture
def silences(tmp_path, clock):
    return AlertSilences(tmp_path / "metrics.db", clock=lambda: clock[0])


def test_a_silence_holds_until_its_time_then_lapses(silences, clock):
    entry = silences.silence("gpu_temperature", GPU0, 60, "ops", "maintenance")
    assert entry["id"] and entry["until"] == clock[0] + 60 and entry["comment"] == "maintenance"
    state = silences.state_of("gpu_temperature", GPU0)
    assert state == {"kind": "silenced", "until": clock[0] + 60, "actor": "ops", "id": entry["id"]}
    assert [e["id"] for e in silences.active()] == [entry["id"]]
    clock[0] += 60
    assert silences.state_of("gpu_temperature", GPU0) is None and silences.active() == []


def test_a_silence_with_fewer_labels_covers_every_matching_series(silences):
    silences.silence("gpu_temperature", {}, 60, "ops")
    assert silences.state_of("gpu_temperature", GPU0)["kind"] == "silenced"
    assert silences.state_of("gpu_temperature", (("gpu", "3"),))["kind"] == "silenced"
    assert silences.state_of("cpu_usage", {}) is None


def test_a_silence_of_one_series_leaves_the_others_loud(silences):
    silences.silence("gpu_temperature", GPU0, 60, "ops")
    assert silences.state_of("gpu_temperature", {"gpu": "1"}) is None
    assert silences.state_of("gpu_temperature", {}) is None


def test_an_acknowledgement_lasts_while_the_episode_it_was_made_in_keeps_firing(silences, clock):
    started = clock[0] - 30  # the alert has been firing for 30 s
    entry = silences.acknowledge("gpu_temperature", GPU0, "ops")
    assert entry["kind"] == "acknowledged" and entry["until"] is None
    clock[0] += 86400  # no expiry: a day later it still holds
    assert silences.state_of("gpu_temperature", GPU0, started_at=started) == {
        "kind": "acknowledged", "until": None, "actor": "ops", "id": entry["id"]}
    # A firing that started after the ack is a later episode: not acknowledged.
    assert silences.state_of("gpu_temperature", GPU0, started_at=clock[0] - 5) is None
    assert silences.state_of("gpu_temperature", {"gpu": "1"}, started_at=started) is None


def test_a_resolution_closes_the_acknowledgement(silences, clock):
    silences.acknowledge("gpu_temperature", GPU0, "ops")
    assert silences.close_acknowledgements("gpu_temperature", (("gpu", "0"),), at=clock[0] + 5) == 1
    clock[0] += 10
    assert silences.state_of("gpu_temperature", GPU0) is None and silences.active() == []


def test_expire_and_unsilence_end_entries_now(silences, clock):
    first = silences.silence("gpu_temperature", GPU0, 600, "ops")
    silences.acknowledge("gpu_temperature", GPU0, "ops")
    other = silences.silence("cpu_usage", {}, 600, "ops")
    assert silences.expire("gpu_temperature", GPU0) == 2
    assert silences.state_of("gpu_temperature", GPU0) is None
    assert silences.get(first["id"])["until"] == clock[0]
    assert silences.unsilence(other["id"]) is True
    assert silences.unsilence(other["id"]) is False  # already over
    assert silences.unsilence(999) is False
    assert silences.active() == []


def test_a_locked_database_never_raises(tmp_path, clock):
    path = tmp_path / "metrics.db"
    silences = AlertSilences(path, clock=lambda: clock[0], busy_timeout_s=0.05)
    kept = silences.silence("cpu_usage", {}, 600, "ops")
    holder = sqlite3.connect(str(path), timeout=0.05)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        refused = silences.silence("gpu_temperature", GPU0, 60, "ops")
        assert refused["id"] is None and refused["error"] == "locked"
        assert silences.status()["state"] == "locked"
        assert silences.unsilence(kept["id"]) is False
    finally:
        holder.rollback()
        holder.close()
    assert silences.silence("gpu_temperature", GPU0, 60, "ops")["id"] and silences.status()["state"] == "ok"


# --- the delivery filter, end to end --------------------------------------------------------------
RULES = "alerts:\n  gpu_temperature:\n    warning: 80\n    critical: 90\n    duration: 0\n    repeat_interval: 30\n"


@pytest.fixture
def receiver():
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def monitored(make_app, tmp_path, receiver, clock):
    """An app whose monitor, dispatcher, history and silences run on the test's clock, and its fake NVML."""
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    channels = tmp_path / "alerting.yaml"
    channels.write_text(f'alerting:\n  webhooks:\n    - url: "{receiver.url}"\n      name: test-hook\n')
    nvml = FakeNvml("two_unequal")
    app = make_app(nvml=nvml, alert_rules_file=str(rules), alert_channels_file=str(channels))
    svc = app.extensions[EXTENSION_KEY]
    silences = AlertSilences(metrics_db_path(svc.settings), clock=lambda: clock[0])
    monitor, dispatcher, history = build_monitoring(svc.settings, svc.engine, GpuReader(nvml=nvml),
                                                    clock=lambda: clock[0], silences=silences)
    replaced = svc.alerts
    svc.monitor, svc.alerts, svc.alert_history, svc.silences = monitor, dispatcher, history, silences
    try:
        yield app, nvml
    finally:
        dispatcher.close(wait=False)
        replaced.close(wait=False)


def step(app, nvml, clock, at: float, temperature: int) -> None:
    """Set GPU 0's temperature, collect at `at` and wait until every delivery is done."""
    svc = app.extensions[EXTENSION_KEY]
    nvml.devices[0]["temp"] = temperature
    clock[0] = at
    svc.monitor.collect_once()
    assert svc.alerts.wait_idle(10)


def test_a_silenced_alert_is_recorded_but_not_notified_and_its_resolution_is(monitored, receiver, clock):
    app, nvml = monitored
    client = app.test_client()
    start = clock[0]
    response = client.post("/api/alerts/silence", json={"alert": "gpu_temperature", "labels": {}, "seconds": 100,
                                                        "comment": "swapping fans", "actor": "ops"})
    assert response.status_code == 201
    step(app, nvml, clock, start + 1, 85)      # fires (warning): silenced
    step(app, nvml, clock, start + 10, 95)     # escalates to critical: silenced
    assert receiver.bodies == []
    history = client.get("/api/alerts").get_json()["history"]
    assert [(e["new"], e["reason"]) for e in history] == [("firing", "escalated"), ("firing", "fired")]
    step(app, nvml, clock, start + 20, 50)     # resolves: always delivered
    assert [body["status"] for body in receiver.bodies] == ["resolved"]
    step(app, nvml, clock, start + 200, 85)    # the silence is over: a new firing is delivered
    assert [body["status"] for body in receiver.bodies] == ["resolved", "firing"]


def test_an_acknowledged_alert_stays_quiet_until_it_resolves_and_a_later_firing_is_notified(
        monitored, receiver, clock):
    app, nvml = monitored
    client = app.test_client()
    start = clock[0]
    step(app, nvml, clock, start, 85)          # fires: delivered
    assert [body["status"] for body in receiver.bodies] == ["firing"]
    response = client.post("/api/alerts/acknowledge", json={"alert": "gpu_temperature", "labels": GPU0})
    assert response.status_code == 201 and response.get_json()["kind"] == "acknowledged"
    assert [s["kind"] for s in client.get("/api/alerts/silences").get_json()["silences"]] == ["acknowledged"]
    step(app, nvml, clock, start + 40, 85)     # a repeat after repeat_interval: held back
    step(app, nvml, clock, start + 45, 95)     # an escalation: held back
    assert len(receiver.bodies) == 1
    # Still firing for the health score and the dashboard.
    assert client.get("/api/metrics/dashboard").get_json()["alerts"]["count"] == 1
    step(app, nvml, clock, start + 50, 50)     # resolves: delivered, and the acknowledgement ends
    assert [body["status"] for body in receiver.bodies] == ["firing", "resolved"]
    assert client.get("/api/alerts/silences").get_json()["silences"] == []
    step(app, nvml, clock, start + 60, 85)     # a new episode: not acknowledged
    assert [body["status"] for body in receiver.bodies] == ["firing", "resolved", "firing"]


# --- routes -------------------------------------------------------------------------------------
@pytest.fixture
def alert_client(make_app, tmp_path):
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    return make_app(nvml=FakeNvml("two_unequal"), alert_rules_file=str(rules)).test_client()


@pytest.mark.parametrize("body, field", [
    ({"labels": {}, "seconds": 60}, "alert"),
    ({"alert": "no_such_rule", "seconds": 60}, "alert"),
    ({"alert": 5, "seconds": 60}, "alert"),
    ({"alert": "gpu_temperature", "seconds": 0}, "seconds"),
    ({"alert": "gpu_temperature", "seconds": -5}, "seconds"),
    ({"alert": "gpu_temperature", "seconds": "60"}, "seconds"),
    ({"alert": "gpu_temperature", "seconds": True}, "seconds"),
    ({"alert": "gpu_temperature", "seconds": 30 * 86400 + 1}, "seconds"),
    ({"alert": "gpu_temperature"}, "seconds"),
    ({"alert": "gpu_temperature", "seconds": 60, "labels": {"gpu": 0}}, "labels"),
    ({"alert": "gpu_temperature", "seconds": 60, "labels": ["gpu", "0"]}, "labels"),
    ({"alert": "gpu_temperature", "seconds": 60, "comment": 7}, "comment"),
])
def test_silence_answers_400_naming_the_field(alert_client, body, field):
    response = alert_client.post("/api/alerts/silence", json=body)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_silence_refuses_a_non_finite_number_of_seconds(alert_client):
    response = alert_client.post("/api/alerts/silence", data='{"alert": "gpu_temperature", "seconds": NaN}',
                                 content_type="application/json")
    assert response.status_code == 400 and "seconds" in response.get_json()["error"]


def test_silence_refuses_a_body_that_is_not_an_object(alert_client):
    response = alert_client.post("/api/alerts/silence", json=["gpu_temperature"])
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]


def test_silences_are_listed_and_can_be_ended_by_id(alert_client):
    created = alert_client.post("/api/alerts/silence", json={"alert": "gpu_temperature", "labels": GPU0,
                                                             "seconds": 3600}).get_json()
    listed = alert_client.get("/api/alerts/silences").get_json()
    assert [(s["id"], s["alert"], s["labels"], s["kind"]) for s in listed["silences"]] == [
        (created["id"], "gpu_temperature", GPU0, "silenced")]
    assert listed["store"]["state"] == "ok" and created["actor"]  # the client's address when no actor is given
    ended = alert_client.delete(f"/api/alerts/silence/{created['id']}")
    assert ended.status_code == 200 and ended.get_json()["id"] == created["id"]
    assert alert_client.get("/api/alerts/silences").get_json()["silences"] == []
    assert alert_client.delete(f"/api/alerts/silence/{created['id']}").status_code == 409
    assert alert_client.delete("/api/alerts/silence/4242").status_code == 404


def test_acknowledging_an_alert_that_is_not_firing_is_refused(alert_client):
    response = alert_client.post("/api/alerts/acknowledge", json={"alert": "gpu_temperature", "labels": GPU0})
    assert response.status_code == 409 and "not firing" in response.get_json()["error"]
    assert alert_client.get("/api/alerts/silences").get_json()["silences"] == []
