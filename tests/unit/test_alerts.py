"""The alert engine: rule files and the inactive → pending → firing → resolved state machine, on a fake clock."""
from __future__ import annotations

from pathlib import Path

import pytest

from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alert_rules import load_alerting
from ollama_server.monitoring.alert_rules import load_rules
from ollama_server.monitoring.alert_rules import parse_alerting
from ollama_server.monitoring.alert_rules import parse_duration
from ollama_server.monitoring.alert_rules import parse_rules
from ollama_server.monitoring.alerts import FIRING
from ollama_server.monitoring.alerts import PENDING
from ollama_server.monitoring.alerts import evaluate

CONFIG = Path(__file__).resolve().parents[2] / "config"
CPU = Rule(name="cpu_usage", metric="cpu_usage", warning=80, critical=95, duration_s=300, repeat_interval_s=3600)


class Engine:
    """Drives evaluate() over a scripted series of values; the clock is whatever the test says."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = rules or (CPU,)
        self.states: dict = {}
        self.transitions: list = []

    def at(self, now: float, value: float | None, metric: str = "cpu_usage", labels: dict | None = None) -> list:
        values = {} if value is None else {(metric, tuple((labels or {}).items())): value}
        self.states, new = evaluate(self.rules, values, self.states, now)
        self.transitions += new
        return new

    def run(self, start: float, stop: float, step: float, value: float) -> None:
        t = start
        while t <= stop:
            self.at(t, value)
            t += step


def test_it_never_notifies_a_breach_shorter_than_duration():
    engine = Engine()
    engine.run(0, 290, 10, 90)  # 290 s of breach, duration is 300
    assert [s.phase for s in engine.states.values()] == [PENDING]
    engine.run(300, 600, 10, 20)
    assert engine.transitions == []
    assert engine.states == {}


def test_it_fires_once_for_a_sustained_breach_and_resolves_once_when_it_clears():
    engine = Engine()
    engine.run(0, 1200, 10, 90)
    assert [(t.old, t.new, t.severity, t.at, t.started_at) for t in engine.transitions] == [
        ("pending", "firing", "warning", 300, 0)]
    engine.run(1210, 1500, 10, 10)
    assert [(t.old, t.new, t.reason, t.at) for t in engine.transitions[1:]] == [("firing", "resolved", "resolved",
                                                                                 1210)]
    assert engine.states == {}


def test_it_fires_immediately_without_a_duration():
    engine = Engine(Rule(name="error_rate", metric="error_rate", warning=5, critical=15))
    assert [t.new for t in engine.at(0, 6, "error_rate")] == ["firing"]


def test_it_notifies_an_escalation_from_warning_to_critical_once():
    engine = Engine()
    engine.run(0, 400, 10, 90)  # warning fires at 300
    engine.run(410, 2000, 10, 99)  # critical from 410, sustained 300 s → escalates at 710
    escalations = [t for t in engine.transitions if t.reason == "escalated"]
    assert [(t.old, t.new, t.previous_severity, t.severity, t.at) for t in escalations] == [
        ("firing", "firing", "warning", "critical", 710)]
    assert [t.reason for t in engine.transitions] == ["fired", "escalated"]


def test_it_does_not_escalate_on_a_short_critical_spike():
    engine = Engine()
    engine.run(0, 400, 10, 90)
    engine.at(410, 99)
    engine.run(420, 900, 10, 90)
    assert [t.reason for t in engine.transitions] == ["fired"]


def test_it_notifies_a_deescalation_from_critical_to_warning_once():
    engine = Engine()
    engine.run(0, 400, 10, 99)  # critical for 300 s straight away → fires critical
    engine.run(410, 600, 10, 90)
    assert [(t.reason, t.severity, t.previous_severity) for t in engine.transitions] == [
        ("fired", "critical", None), ("deescalated", "warning", "critical")]


def test_it_repeats_a_still_firing_alert_only_after_the_repeat_interval():
    engine = Engine()
    engine.run(0, 300 + 3590, 10, 90)
    assert [t.reason for t in engine.transitions] == ["fired"]
    engine.at(300 + 3600, 90)
    assert [t.reason for t in engine.transitions] == ["fired", "repeat"]
    engine.run(300 + 3610, 300 + 7190, 10, 90)
    assert [t.reason for t in engine.transitions] == ["fired", "repeat"]
    engine.at(300 + 7200, 90)
    assert [(t.reason, t.at) for t in engine.transitions[1:]] == [("repeat", 3900), ("repeat", 7500)]


def test_it_never_repeats_with_a_zero_repeat_interval():
    engine = Engine(Rule(name="cpu_usage", metric="cpu_usage", warning=80, duration_s=0, repeat_interval_s=0))
    engine.run(0, 100_000, 100, 90)
    assert [t.reason for t in engine.transitions] == ["fired"]


def test_it_stays_silent_while_flapping_inside_the_duration():
    engine = Engine()
    for i in range(200):  # 100 s above, 100 s below, for over 11 hours
        engine.at(i * 100, 90 if i % 2 == 0 else 50)
    assert engine.transitions == []


def test_it_resolves_a_firing_alert_whose_series_disappears():
    engine = Engine()
    engine.run(0, 300, 10, 90)
    assert [t.reason for t in engine.at(310, None)] == ["resolved"]
    assert engine.transitions[-1].value == 90


def test_it_tracks_each_label_set_separately_and_honours_the_label_matcher():
    rule = Rule(name="gpu0_hot", metric="gpu_temperature", warning=80, duration_s=0, labels=(("gpu", "0"),))
    values = {("gpu_temperature", (("gpu", "0"),)): 90.0, ("gpu_temperature", (("gpu", "1"),)): 90.0}
    states, transitions = evaluate([rule], values, {}, 0)
    assert [(t.rule.name, t.labels) for t in transitions] == [("gpu0_hot", (("gpu", "0"),))]
    assert list(states) == [("gpu0_hot", (("gpu", "0"),))]


def test_it_supports_less_than_rules():
    rule = Rule(name="free", metric="gpu_memory_free_bytes", warning=1000, critical=100, comparison="<",
                duration_s=0)
    states, transitions = evaluate([rule], {("gpu_memory_free_bytes", ()): 50.0}, {}, 0)
    assert [(t.new, t.severity) for t in transitions] == [("firing", "critical")]
    assert [s.phase for s in states.values()] == [FIRING]


def test_it_is_pure_and_leaves_the_input_states_alone():
    states, _ = evaluate([CPU], {("cpu_usage", ()): 90.0}, {}, 0)
    before = dict(states)
    evaluate([CPU], {("cpu_usage", ()): 90.0}, states, 400)
    assert states == before


# --- rule files -------------------------------------------------------------------------------------------


def test_it_loads_the_seed_thresholds_from_the_example_file():
    rules = {r.name: r for r in load_rules(CONFIG / "alerts.example.yaml")}
    assert set(rules) == {"cpu_usage", "memory_usage", "gpu_temperature", "error_rate", "response_time"}
    assert (rules["gpu_temperature"].warning, rules["gpu_temperature"].critical,
            rules["gpu_temperature"].duration_s) == (80, 85, 180)
    assert rules["response_time"].comparison == ">"
    assert rules["cpu_usage"].repeat_interval_s == 4 * 3600


@pytest.mark.parametrize("text, seconds", [(300, 300.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0),
                                           ("250ms", 0.25), ("45", 45.0), (1.5, 1.5)])
def test_it_accepts_numbers_and_prometheus_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_it_accepts_any_metric_of_the_catalogue_with_labels():
    rules = parse_rules("alerts:\n  low_vram:\n    metric: gpu_memory_free_bytes\n    comparison: '<'\n"
                        "    critical: 100\n    duration: 5m\n    labels: {gpu: 0}\n",
                        known_metrics={"gpu_memory_free_bytes"})
    assert rules == (Rule(name="low_vram", metric="gpu_memory_free_bytes", critical=100, comparison="<",
                          duration_s=300, labels=(("gpu", "0"),)),)


@pytest.mark.parametrize("text, where", [
    ("alerts:\n  cpu_usage:\n    warning: high\n", "line 3: alerts.cpu_usage.warning"),
    ("alerts:\n  cpu_usage:\n    warning: 80\n    duration: soon\n", "line 4: alerts.cpu_usage.duration"),
    ("alerts:\n  cpu_usage:\n    warning: 80\n    critcal: 95\n", "line 4: alerts.cpu_usage.critcal"),
    ("alerts:\n  cpu_usage:\n    warning: 90\n    critical: 80\n", "line 4: alerts.cpu_usage.critical"),
    ("alerts:\n  cpu_usage:\n    duration: 5\n", "line 2: alerts.cpu_usage"),
    ("alerts:\n  cpu_usage:\n    warning: 80\n    comparison: '=>'\n", "line 4: alerts.cpu_usage.comparison"),
    ("alerts:\n  cpu_usage: [80]\n", "line 2: alerts.cpu_usage"),
    ("alerts:\n  cpu_usage:\n    warning: 80\n  nope:\n    warning: 1\n", "line 4: alerts.nope"),
    ("alerts: {cpu_usage: {warning: 80}\n", "invalid YAML"),
    ("alerts:\n  cpu_usage:\n    warning: 80\n  cpu_usage:\n    warning: 90\n", "line 4: alerts.cpu_usage: duplicate"),
])
def test_it_rejects_an_invalid_rule_file_naming_the_key_and_line(text, where):
    with pytest.raises(ValueError, match=where.replace(".", r"\.").replace("[", r"\[")):
        parse_rules(text, known_metrics={"cpu_usage"})


def test_it_loads_the_seed_channels_from_the_example_file():
    config = load_alerting(CONFIG / "alerting.example.yaml")
    assert [sorted(h.events) for h in config.webhooks] == [["critical", "warning"], ["critical"]]
    assert dict(config.webhooks[1].headers) == {"Authorization": "Token token=REPLACE_ME"}
    assert config.email is None and config.alertmanager_url == ""


def test_it_reads_the_seed_email_keys():
    config = parse_alerting("alerting:\n  webhooks: []\n  alertmanager_url: http://am:9093\n"
                            "email:\n  smtp_server: localhost\n  smtp_port: 587\n  use_tls: true\n"
                            "  username: me@example.invalid\n  recipients: [a@example.invalid, b@example.invalid]\n")
    assert config.alertmanager_url == "http://am:9093"
    assert (config.email.smtp_server, config.email.smtp_port, config.email.use_tls, config.email.sender,
            config.email.recipients) == ("localhost", 587, True, "me@example.invalid",
                                         ("a@example.invalid", "b@example.invalid"))


@pytest.mark.parametrize("text, where", [
    ("alerting:\n  webhooks:\n    - url: ftp://x\n", r"line 3: alerting\.webhooks\[0\]\.url"),
    ("alerting:\n  webhooks:\n    - url: http://x\n      events: [info]\n", r"line 4: alerting\.webhooks\[0\]\.events"),
    ("alerting:\n  webhooks:\n    - url: http://x\n      headers: [a]\n", r"line 4: alerting\.webhooks\[0\]\.headers"),
    ("email:\n  smtp_server: localhost\n  smtp_port: high\n  recipients: [a@b]\n", r"line 3: email\.smtp_port"),
    ("email:\n  smtp_server: localhost\n  recipients: []\n", r"line 3: email\.recipients"),
    ("alerting:\n  slack: {}\n", r"line 2: alerting\.slack"),
])
def test_it_rejects_an_invalid_alerting_file_naming_the_key_and_line(text, where):
    with pytest.raises(ValueError, match=where):
        parse_alerting(text)
