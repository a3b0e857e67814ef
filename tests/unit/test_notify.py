"""Delivery: real local HTTP and SMTP receivers, retries on an injected sleep, a dispatcher that never blocks."""
from __future__ import annotations

import json
import logging
import smtplib
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller

from ollama_server.monitoring import notify
from ollama_server.monitoring.alert_rules import EmailConfig
from ollama_server.monitoring.alert_rules import Rule
from ollama_server.monitoring.alert_rules import WebhookConfig
from ollama_server.monitoring.alerts import Transition
from ollama_server.monitoring.alerts import evaluate
from ollama_server.monitoring.notify import AlertmanagerChannel
from ollama_server.monitoring.notify import Channel
from ollama_server.monitoring.notify import Dispatcher
from ollama_server.monitoring.notify import EmailChannel
from ollama_server.monitoring.notify import LogChannel
from ollama_server.monitoring.notify import NotifyError
from ollama_server.monitoring.notify import Retry
from ollama_server.monitoring.notify import WebhookChannel

GPU = Rule(name="gpu_temperature", metric="gpu_temperature", warning=80, critical=85, duration_s=0)
WAIT = 10  # seconds: only an upper bound for Event waits, never a pass/fail threshold


def transitions(*values: float) -> list[Transition]:
    """GPU transitions over one value per second."""
    states: dict = {}
    out: list[Transition] = []
    for i, value in enumerate(values):
        states, new = evaluate([GPU], {("gpu_temperature", (("gpu", "0"),)): value}, states, 1_790_000_000.0 + i)
        out += new
    return out


WARNING, = transitions(82)
CRITICAL, = transitions(90)


class Receiver:
    """A real HTTP server on 127.0.0.1: answers each path from a script of status codes; /slow blocks."""

    def __init__(self) -> None:
        self.script: dict[str, list[int]] = {}
        self.received: list[tuple[str, dict, object]] = []
        self.slow_entered = threading.Event()
        self.slow_release = threading.Event()
        self.slow_answered = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((self.path, dict(self.headers), body))
                if self.path == "/slow":
                    receiver.slow_entered.set()
                    receiver.slow_release.wait(WAIT)
                codes = receiver.script.get(self.path, [200])
                status = codes.pop(0) if len(codes) > 1 else codes[0]
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (timeout) before we answered
                if self.path == "/slow":
                    receiver.slow_answered.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.slow_release.set()
    r.server.shutdown()
    r.server.server_close()


class Sleeps(list):
    """An injected sleep that records the backoff instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def webhook(url: str, sleeps: Sleeps | None = None, **config) -> WebhookChannel:
    return WebhookChannel(WebhookConfig(url=url, name="test", **config), external_url="http://host/dash",
                          retry=Retry(attempts=4, backoff_s=0.5), sleep=sleeps if sleeps is not None else Sleeps())


def test_it_posts_the_v4_body_and_the_configured_headers_to_a_real_receiver(receiver):
    webhook(receiver.url + "/hook", headers=(("Authorization", "Token token=abc"),)).notify(WARNING)
    ((path, headers, body),) = receiver.received
    assert path == "/hook"
    assert headers["Authorization"] == "Token token=abc"
    assert headers["Content-Type"] == "application/json"
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "test")
    assert body["alerts"][0]["labels"] == {"alertname": "gpu_temperature", "severity": "warning", "gpu": "0"}


def test_it_delivers_after_retrying_two_503s_with_exponential_backoff(receiver):
    receiver.script["/hook"] = [503, 503, 200]
    sleeps = Sleeps()
    webhook(receiver.url + "/hook", sleeps).notify(WARNING)
    assert receiver.paths() == ["/hook"] * 3
    assert sleeps == [0.5, 1.0]


def test_it_tries_a_400_only_once(receiver):
    receiver.script["/hook"] = [400]
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        webhook(receiver.url + "/hook", sleeps).notify(WARNING)
    assert caught.value.permanent and "HTTP 400" in caught.value.message
    assert receiver.paths() == ["/hook"] and sleeps == []


def test_it_gives_up_on_a_persistent_500_after_bounded_attempts(receiver):
    receiver.script["/hook"] = [500]
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        webhook(receiver.url + "/hook", sleeps).notify(WARNING)
    assert not caught.value.permanent and "4 attempts" in caught.value.message
    assert receiver.paths() == ["/hook"] * 4 and sleeps == [0.5, 1.0, 2.0]


def test_it_stops_retrying_when_the_total_time_budget_is_spent():
    calls = []

    def failing(url, json, headers, timeout):
        calls.append(url)
        return 502

    clock = iter(range(0, 1000, 5)).__next__  # every reading is 5 s later
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(notify, "http_post", failing)
        with pytest.raises(NotifyError):
            notify.post_with_retry("http://x/", {}, {}, 1, Retry(attempts=100, backoff_s=1, max_total_s=20),
                                   sleep=Sleeps(), clock=clock)
    assert 1 < len(calls) < 100


def test_it_retries_connection_errors_without_leaking_the_url_path():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/services/SECRET"
    sleeps = Sleeps()
    with pytest.raises(NotifyError) as caught:
        webhook(url, sleeps).notify(WARNING)
    assert not caught.value.permanent and len(sleeps) == 3
    assert "SECRET" not in caught.value.message


def test_it_pushes_to_a_real_alertmanagers_v2_api(receiver):
    AlertmanagerChannel(receiver.url + "/", retry=Retry(attempts=1)).notify(WARNING)
    ((path, _, body),) = receiver.received
    assert path == "/api/v2/alerts"
    assert body[0]["labels"]["alertname"] == "gpu_temperature" and "endsAt" not in body[0]


def test_a_slow_receiver_never_blocks_dispatch_or_the_other_channels(receiver):
    results: list[tuple[str, NotifyError | None]] = []
    fast_done = threading.Event()

    def on_result(t, name, error):
        results.append((name, error))
        if name == "fast":
            fast_done.set()

    slow = WebhookChannel(WebhookConfig(url=receiver.url + "/slow", name="slow", timeout_s=0.5),
                          retry=Retry(attempts=1))
    fast = WebhookChannel(WebhookConfig(url=receiver.url + "/fast", name="fast"), retry=Retry(attempts=1))
    dispatcher = Dispatcher([slow, fast], on_result=on_result)
    try:
        assert dispatcher.dispatch([WARNING]) == 2
        # dispatch() has returned while the slow receiver cannot have answered: it waits for our release.
        assert not receiver.slow_answered.is_set()
        assert receiver.slow_entered.wait(WAIT)
        assert fast_done.wait(WAIT)  # the fast receiver was served while the slow one still hangs
        assert not receiver.slow_answered.is_set()
        assert dispatcher.wait_idle(WAIT)  # the slow delivery ends by its own timeout
        errors = dict(results)
        assert errors["fast"] is None
        assert isinstance(errors["slow"], NotifyError) and not errors["slow"].permanent
    finally:
        receiver.slow_release.set()
        dispatcher.close()


class Recording(Channel):
    """A channel that only remembers what it was given."""

    def __init__(self, events: set[str], send_resolved: bool = True) -> None:
        self.events = frozenset(events)
        self.send_resolved = send_resolved
        self.got: list[Transition] = []
        self.name = "recording"

    def notify(self, t: Transition) -> None:
        self.got.append(t)


def test_it_routes_by_each_channels_events():
    critical_only, everything, no_resolved = Recording({"critical"}), Recording({"warning", "critical"}), \
        Recording({"warning", "critical"}, send_resolved=False)
    fired, escalated, downgraded, resolved = transitions(82, 90, 82, 10)
    dispatcher = Dispatcher([critical_only, everything, no_resolved])
    dispatcher.dispatch([fired, escalated, downgraded, resolved])
    assert dispatcher.wait_idle(WAIT)
    dispatcher.close()
    assert [t.reason for t in everything.got] == ["fired", "escalated", "deescalated", "resolved"]
    # A critical-only receiver hears the escalation and that its critical alert went away.
    assert [t.reason for t in critical_only.got] == ["escalated", "deescalated"]
    assert [t.reason for t in no_resolved.got] == ["fired", "escalated", "deescalated"]


def test_it_keeps_a_crashing_channel_from_stopping_delivery():
    class Broken(Recording):
        def notify(self, t: Transition) -> None:
            raise RuntimeError("boom")

    errors = []
    dispatcher = Dispatcher([Broken({"warning"})], on_result=lambda t, name, error: errors.append(error))
    dispatcher.dispatch([WARNING, WARNING])
    assert dispatcher.wait_idle(WAIT)
    dispatcher.close()
    assert [e.message for e in errors] == ["RuntimeError: boom"] * 2


def test_it_logs_every_transition(caplog):
    with caplog.at_level(logging.INFO, logger="ollama_server.monitoring.notify"):
        LogChannel().notify(CRITICAL)
    assert "gpu_temperature" in caplog.text and "critical" in caplog.text


# --- e-mail ----------------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


def email_config(port: int, **overrides) -> EmailConfig:
    values = dict(smtp_server="127.0.0.1", smtp_port=port, use_tls=False, sender="alerts@example.invalid",
                  recipients=("oncall@example.invalid", "ops@example.invalid"), timeout_s=5)
    values.update(overrides)
    return EmailConfig(**values)


def test_it_emails_an_alert_with_its_name_and_severity_to_a_real_smtp_server(smtp_server):
    inbox, port = smtp_server
    EmailChannel(email_config(port)).notify(CRITICAL)
    ((sender, recipients, message),) = inbox.messages
    assert sender == "alerts@example.invalid"
    assert recipients == ["oncall@example.invalid", "ops@example.invalid"]
    assert message["Subject"] == "[CRITICAL] gpu_temperature firing"
    body = message.get_payload(decode=True).decode()
    assert "alert: gpu_temperature" in body and "severity: critical" in body and "value: 90" in body


def test_it_emails_the_resolution(smtp_server):
    inbox, port = smtp_server
    _, resolved = transitions(82, 10)
    EmailChannel(email_config(port)).notify(resolved)
    assert inbox.messages[0][2]["Subject"] == "[WARNING] gpu_temperature resolved"


def test_it_fails_permanently_when_tls_is_required_but_the_server_offers_no_starttls(smtp_server):
    inbox, port = smtp_server
    with pytest.raises(NotifyError) as caught:
        EmailChannel(email_config(port, use_tls=True)).notify(CRITICAL)
    assert caught.value.permanent and inbox.messages == []  # never falls back to plain text


def test_it_logs_in_with_the_password_from_the_environment():
    calls = []

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            calls.append(("connect", host, port))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def starttls(self, context):
            calls.append(("starttls",))

        def login(self, user, password):
            calls.append(("login", user, password))

        def send_message(self, message):
            calls.append(("send", message["To"]))

    config = email_config(587, smtp_server="mail.example.invalid", use_tls=True, username="me",
                          password_env="SMTP_PASSWORD")
    EmailChannel(config, smtp=FakeSMTP, env={"SMTP_PASSWORD": "pw"}).notify(WARNING)
    assert calls == [("connect", "mail.example.invalid", 587), ("starttls",), ("login", "me", "pw"),
                     ("send", "oncall@example.invalid, ops@example.invalid")]


def test_it_reports_an_unreachable_smtp_server_as_transient():
    with pytest.raises(NotifyError) as caught:
        EmailChannel(email_config(free_port())).notify(WARNING)
    assert not caught.value.permanent


def test_smtplib_is_the_default_transport():
    assert EmailChannel(email_config(25)).smtp is smtplib.SMTP
