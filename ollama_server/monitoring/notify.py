"""Delivery of alert transitions: channels (log, webhook, Alertmanager, e-mail) and a non-blocking dispatcher."""
from __future__ import annotations

import logging
import os
import smtplib
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Mapping
from typing import Optional
from urllib.parse import urlsplit

import requests

from ollama_server.monitoring.alert_rules import SEVERITIES
from ollama_server.monitoring.alert_rules import AlertingConfig
from ollama_server.monitoring.alert_rules import EmailConfig
from ollama_server.monitoring.alert_rules import WebhookConfig
from ollama_server.monitoring.alertmanager import annotations
from ollama_server.monitoring.alertmanager import api_v2_alerts
from ollama_server.monitoring.alertmanager import rfc3339
from ollama_server.monitoring.alertmanager import webhook_payload
from ollama_server.monitoring.alerts import RESOLVED
from ollama_server.monitoring.alerts import Transition

log = logging.getLogger(__name__)


class NotifyError(Exception):
    """A delivery failed; `permanent` means retrying cannot help (a 4xx, a refused recipient)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def redact(url: str) -> str:
    """scheme://host of a URL: webhook paths and queries often hold the secret (Slack, tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…" if parts.netloc else "<url>"


def http_post(url: str, json: Any, headers: Mapping[str, str], timeout: float) -> int:
    """The one outbound HTTP seam: POST JSON, return the status code; NotifyError on a transport failure."""
    try:
        response = requests.post(url, json=json, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema) as exc:
        raise NotifyError(f"POST {redact(url)}: invalid URL ({type(exc).__name__})", permanent=True) from None
    except requests.RequestException as exc:
        raise NotifyError(f"POST {redact(url)}: {type(exc).__name__}", permanent=False) from None
    response.close()
    return response.status_code


@dataclass(frozen=True)
class Retry:
    """Bounded exponential backoff: at most `attempts` tries and `max_total_s` seconds of waiting and trying."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_total_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def post_with_retry(url: str, body: Any, headers: Mapping[str, str], timeout: float, retry: Retry,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> int:
    """POST until 2xx; retry 5xx and transport errors with backoff, never other statuses. Returns attempts used."""
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            status = http_post(url, body, headers, timeout)
        except NotifyError as exc:
            if exc.permanent:
                raise
            error = exc
        else:
            if 200 <= status < 300:
                return attempt
            # Alertmanager's Retrier: 5xx may be transient, any other status will not change on a retry.
            error = NotifyError(f"POST {redact(url)}: HTTP {status}", permanent=status < 500)
            if error.permanent:
                raise error
        wait = retry.delay(attempt)
        if attempt >= retry.attempts or clock() - start + wait > retry.max_total_s:
            raise NotifyError(f"{error.message} (gave up after {attempt} attempts)", permanent=False)
        sleep(wait)


class Channel:
    """A destination for transitions; `notify` raises NotifyError when delivery fails."""

    name: str = "channel"
    events: frozenset[str] = frozenset(SEVERITIES)
    send_resolved: bool = True

    def accepts(self, t: Transition) -> bool:
        """Whether this channel wants the transition (its `events` hold the old or new severity)."""
        if t.new == RESOLVED and not self.send_resolved:
            return False
        # A critical-only receiver must still hear that its critical alert ended on a downgrade.
        return t.severity in self.events or (t.previous_severity or "") in self.events

    def notify(self, t: Transition) -> None:
        """Deliver one transition."""
        raise NotImplementedError


class LogChannel(Channel):
    """Writes each transition to the log (always on)."""

    name = "log"

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def notify(self, t: Transition) -> None:
        """Log at WARNING for firing alerts, INFO for resolutions."""
        level = logging.INFO if t.new == RESOLVED else logging.WARNING
        self.logger.log(level, "alert %s %s (%s): %s", t.rule.name, t.reason, t.severity, annotations(t)["summary"])


class WebhookChannel(Channel):
    """POSTs the Alertmanager webhook v4 body to a URL, with the configured headers."""

    def __init__(self, config: WebhookConfig, external_url: str = "", retry: Retry = Retry(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.name = config.name or redact(config.url)
        self.events = config.events
        self.send_resolved = config.send_resolved
        self.external_url = external_url
        self.retry = retry
        self.sleep = sleep

    def notify(self, t: Transition) -> None:
        """One message per transition, grouped by alertname."""
        body = webhook_payload([t], receiver=self.name, external_url=self.external_url)
        headers = {"Content-Type": "application/json", **dict(self.config.headers)}
        post_with_retry(self.config.url, body, headers, self.config.timeout_s, self.retry, self.sleep)


class AlertmanagerChannel(Channel):
    """Pushes alerts to a real Alertmanager's POST /api/v2/alerts."""

    name = "alertmanager"

    def __init__(self, base_url: str, external_url: str = "", timeout_s: float = 10.0, retry: Retry = Retry(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.external_url = external_url
        self.timeout_s = timeout_s
        self.retry = retry
        self.sleep = sleep

    def notify(self, t: Transition) -> None:
        """Alertmanager does its own routing and grouping, so it gets every transition."""
        post_with_retry(self.url, api_v2_alerts([t], self.external_url), {"Content-Type": "application/json"},
                        self.timeout_s, self.retry, self.sleep)


def email_message(t: Transition, sender: str, recipients: Iterable[str]) -> EmailMessage:
    """A plain-text message whose subject carries the severity, alert name and what happened."""
    what = {"fired": "firing", "escalated": f"escalated from {t.previous_severity}",
            "deescalated": f"down from {t.previous_severity}", "repeat": "still firing",
            "resolved": "resolved"}.get(t.reason, t.reason)
    notes = annotations(t)
    message = EmailMessage()
    message["Subject"] = f"[{t.severity.upper()}] {t.rule.name} {what}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [notes["summary"], notes["description"], "",
             f"alert: {t.rule.name}", f"severity: {t.severity}", f"status: {what}",
             f"value: {t.value:g}", f"since: {rfc3339(t.started_at)}", f"at: {rfc3339(t.at)}"]
    lines += [f"label {k}: {v}" for k, v in t.labels]
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailChannel(Channel):
    """Sends one e-mail per transition over SMTP; `use_tls` upgrades the connection with STARTTLS."""

    name = "email"

    def __init__(self, config: EmailConfig, smtp: Callable[..., smtplib.SMTP] = smtplib.SMTP,
                 ssl_context: Optional[ssl.SSLContext] = None, env: Mapping[str, str] = os.environ) -> None:
        self.config = config
        self.events = config.events
        self.send_resolved = config.send_resolved
        self.smtp = smtp
        self.ssl_context = ssl_context
        self.env = env

    def notify(self, t: Transition) -> None:
        """Connect, optionally STARTTLS and log in, send, quit."""
        config = self.config
        password = config.password or (self.env.get(config.password_env, "") if config.password_env else "")
        message = email_message(t, config.sender or "ollama-server@localhost", config.recipients)
        try:
            with self.smtp(config.smtp_server, config.smtp_port, timeout=config.timeout_s) as client:
                if config.use_tls:
                    client.starttls(context=self.ssl_context or ssl.create_default_context())
                if config.username:
                    client.login(config.username, password)
                client.send_message(message)
        except (smtplib.SMTPNotSupportedError, smtplib.SMTPAuthenticationError,
                smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, ssl.SSLCertVerificationError) as exc:
            raise NotifyError(f"SMTP {config.smtp_server}:{config.smtp_port}: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"SMTP {config.smtp_server}:{config.smtp_port}: {exc}", permanent=False) from None


def channels_from(config: AlertingConfig, log_channel: bool = True) -> list[Channel]:
    """Every channel an `alerting.yaml` configures, the log first."""
    channels: list[Channel] = [LogChannel()] if log_channel else []
    channels += [WebhookChannel(hook, config.external_url) for hook in config.webhooks]
    if config.alertmanager_url:
        channels.append(AlertmanagerChannel(config.alertmanager_url, config.external_url))
    if config.email is not None:
        channels.append(EmailChannel(config.email))
    return channels


ResultCallback = Callable[[Transition, str, Optional[NotifyError]], None]


class Dispatcher:
    """Delivers transitions in the background: `dispatch()` never waits for a receiver."""

    def __init__(self, channels: Iterable[Channel], on_result: Optional[ResultCallback] = None) -> None:
        self.channels = list(channels)
        self.on_result = on_result
        # One single-thread queue per channel: order is kept per receiver (firing before resolved),
        # and a slow or dead receiver only delays its own queue, never the others or the caller.
        self._queues = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"alert-{i}")
                        for i in range(len(self.channels))]
        self._pending = 0
        self._idle = threading.Condition()

    def dispatch(self, transitions: Iterable[Transition]) -> int:
        """Queue each transition for every channel that accepts it; returns the number of deliveries queued."""
        queued = 0
        for t in transitions:
            for channel, queue in zip(self.channels, self._queues):
                if channel.accepts(t):
                    with self._idle:
                        self._pending += 1
                    queue.submit(self._deliver, channel, t)
                    queued += 1
        return queued

    def _deliver(self, channel: Channel, t: Transition) -> None:
        error: Optional[NotifyError] = None
        try:
            channel.notify(t)
        except NotifyError as exc:
            error = exc
        except Exception as exc:  # a bug in one channel must not kill its queue
            log.exception("alert channel %s crashed", channel.name)
            error = NotifyError(f"{type(exc).__name__}: {exc}", permanent=False)
        if error is not None:
            log.warning("alert %s to %s failed (%s): %s", t.rule.name, channel.name,
                        "permanent" if error.permanent else "gave up", error.message)
        try:
            if self.on_result is not None:
                self.on_result(t, channel.name, error)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every queued delivery has finished; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, wait: bool = True) -> None:
        """Stop the queues (after finishing what is queued when `wait`)."""
        for queue in self._queues:
            queue.shutdown(wait=wait, cancel_futures=not wait)
