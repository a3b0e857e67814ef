"""Alert rules (`config/alerts.yaml`) and notification channels (`config/alerting.yaml`), loaded and validated."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Iterable
from typing import Optional

import yaml

LabelSet = tuple[tuple[str, str], ...]

COMPARISONS = (">", ">=", "<", "<=")
SEVERITIES = ("warning", "critical")
# Alertmanager's route default; a still-firing alert is re-sent this often.
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RULE_KEYS = {"metric", "warning", "critical", "duration", "comparison", "repeat_interval", "labels"}


@dataclass(frozen=True)
class Rule:
    """One alert rule: a metric (optionally narrowed by labels) compared with warning/critical thresholds."""

    name: str
    metric: str
    warning: Optional[float] = None
    critical: Optional[float] = None
    comparison: str = ">"
    duration_s: float = 0.0
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S
    labels: LabelSet = ()

    def matches(self, metric: str, labels: LabelSet) -> bool:
        """Whether a series (metric, labels) is watched by this rule."""
        return metric == self.metric and set(self.labels) <= set(labels)


@dataclass(frozen=True)
class WebhookConfig:
    """One `alerting.webhooks[]` entry."""

    url: str
    events: frozenset[str] = frozenset(SEVERITIES)
    headers: tuple[tuple[str, str], ...] = ()
    name: str = ""
    timeout_s: float = 10.0
    send_resolved: bool = True


@dataclass(frozen=True)
class EmailConfig:
    """The `email:` block (the seed's keys plus optional password, sender, events)."""

    smtp_server: str
    recipients: tuple[str, ...]
    smtp_port: int = 587
    use_tls: bool = True
    username: str = ""
    password: str = ""
    password_env: str = ""
    sender: str = ""
    events: frozenset[str] = frozenset(SEVERITIES)
    timeout_s: float = 10.0
    send_resolved: bool = True


@dataclass(frozen=True)
class AlertingConfig:
    """Every channel configured in `alerting.yaml`; the log channel is always on."""

    webhooks: tuple[WebhookConfig, ...] = ()
    email: Optional[EmailConfig] = None
    alertmanager_url: str = ""
    external_url: str = ""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus duration string ("30s", "5m", "1h30m")."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration like '5m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        seconds = float(value)
    elif isinstance(value, str) and value and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", value.strip()):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value.strip()))
    else:
        raise ValueError(f"{value!r} is not a number of seconds or a duration like '5m'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a finite, non-negative duration")
    return seconds


class _Doc:
    """A parsed YAML file that can say on which line each key sits, for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{source}: invalid YAML: {exc}") from None
        self.lines: dict[tuple[Any, ...], int] = {}
        if node is not None:
            self._index(node, ())

    def _index(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key, value in node.value:
                # safe_load keeps the last of two equal keys silently; a repeated rule is almost surely a typo.
                if key.value in seen:
                    raise ValueError(f"{self.source}: line {key.start_mark.line + 1}: "
                                     f"{'.'.join(map(str, path + (key.value,)))}: duplicate key")
                seen.add(key.value)
                self._index(value, path + (key.value,))
                self.lines[path + (key.value,)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, path + (i,))

    def error(self, path: tuple[Any, ...], message: str) -> ValueError:
        """A ValueError naming the file, line and dotted key."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")
        return ValueError(f"{self.source}: line {self.lines.get(probe, 1)}: {where or '<top>'}: {message}")


def _number(doc: _Doc, path: tuple[Any, ...], value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise doc.error(path, f"must be a number, got {value!r}")
    return float(value)


def _mapping(doc: _Doc, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.error(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _string_map(doc: _Doc, path: tuple[Any, ...], value: Any, names: re.Pattern[str] | None) -> tuple:
    pairs = []
    for key, item in _mapping(doc, path, value).items():
        if not isinstance(key, str) or (names and not names.match(key)):
            raise doc.error(path + (key,), f"{key!r} is not a valid name")
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise doc.error(path + (key,), "must be a string")
        pairs.append((key, str(item)))
    return tuple(sorted(pairs))


def _rule(doc: _Doc, name: Any, body: Any, known_metrics: Optional[frozenset[str]]) -> Rule:
    path = ("alerts", name)
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise doc.error(path, "rule names must look like metric names (letters, digits, _ and :)")
    body = _mapping(doc, path, body)
    unknown = sorted(set(body) - _RULE_KEYS)
    if unknown:
        raise doc.error(path + (unknown[0],), f"unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    metric = body.get("metric", name)
    if not isinstance(metric, str) or not _METRIC_NAME.match(metric):
        raise doc.error(path + ("metric",), f"{metric!r} is not a valid metric name")
    if known_metrics is not None and metric not in known_metrics:
        raise doc.error(path + ("metric",) if "metric" in body else path, f"unknown metric {metric!r}")
    warning = _number(doc, path + ("warning",), body["warning"]) if body.get("warning") is not None else None
    critical = _number(doc, path + ("critical",), body["critical"]) if body.get("critical") is not None else None
    if warning is None and critical is None:
        raise doc.error(path, "needs a warning or a critical threshold")
    comparison = body.get("comparison", ">")
    if comparison not in COMPARISONS:
        raise doc.error(path + ("comparison",), f"must be one of {', '.join(COMPARISONS)}, got {comparison!r}")
    if warning is not None and critical is not None:
        # Critical must be the worse side of warning, or the warning level could never be reached.
        if (comparison.startswith(">") and critical < warning) or (comparison.startswith("<") and critical > warning):
            raise doc.error(path + ("critical",), f"must be beyond warning ({warning}) for comparison {comparison}")
    durations = {}
    for key, default in (("duration", 0.0), ("repeat_interval", DEFAULT_REPEAT_INTERVAL_S)):
        try:
            durations[key] = parse_duration(body[key]) if key in body else default
        except ValueError as exc:
            raise doc.error(path + (key,), str(exc)) from None
    labels = _string_map(doc, path + ("labels",), body["labels"], _LABEL_NAME) if "labels" in body else ()
    return Rule(name=name, metric=metric, warning=warning, critical=critical, comparison=comparison,
                duration_s=durations["duration"], repeat_interval_s=durations["repeat_interval"], labels=labels)


def parse_rules(text: str, source: str = "alerts.yaml",
                known_metrics: Optional[Iterable[str]] = None) -> tuple[Rule, ...]:
    """Rules from the seed's `alerts:` mapping; known_metrics (the catalogue) restricts metric names."""
    doc = _Doc(text, source)
    if doc.data is None:
        return ()
    top = _mapping(doc, (), doc.data)
    if set(top) - {"alerts"}:
        raise doc.error((sorted(set(top) - {"alerts"}, key=str)[0],), "unknown key (expected 'alerts')")
    known = frozenset(known_metrics) if known_metrics is not None else None
    rules = top.get("alerts") or {}
    return tuple(_rule(doc, name, body, known) for name, body in _mapping(doc, ("alerts",), rules).items())


def load_rules(path: str | Path, known_metrics: Optional[Iterable[str]] = None) -> tuple[Rule, ...]:
    """Rules from a file (see parse_rules)."""
    return parse_rules(Path(path).read_text(encoding="utf-8"), str(path), known_metrics)


def _events(doc: _Doc, path: tuple[Any, ...], value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value or any(e not in SEVERITIES for e in value):
        raise doc.error(path, f"must be a non-empty list drawn from {', '.join(SEVERITIES)}, got {value!r}")
    return frozenset(value)


def _typed(doc: _Doc, path: tuple[Any, ...], body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok:
        raise doc.error(path + (key,), f"must be {'a positive number' if kind is float else kind.__name__}")
    return float(value) if kind is float else value


def _webhook(doc: _Doc, i: int, body: Any) -> WebhookConfig:
    path = ("alerting", "webhooks", i)
    body = _mapping(doc, path, body)
    unknown = sorted(set(body) - {"url", "events", "headers", "name", "timeout", "send_resolved"})
    if unknown:
        raise doc.error(path + (unknown[0],), "unknown key")
    url = body.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise doc.error(path + ("url",), f"must be an http(s) URL, got {url!r}")
    return WebhookConfig(
        url=url, events=_events(doc, path + ("events",), body["events"]) if "events" in body else frozenset(SEVERITIES),
        headers=_string_map(doc, path + ("headers",), body["headers"], None) if body.get("headers") else (),
        name=_typed(doc, path, body, "name", str, f"webhook-{i}"),
        timeout_s=_typed(doc, path, body, "timeout", float, 10.0),
        send_resolved=_typed(doc, path, body, "send_resolved", bool, True))


_EMAIL_KEYS = {"smtp_server", "smtp_port", "use_tls", "username", "password", "password_env", "sender",
               "recipients", "events", "timeout", "send_resolved"}


def _email(doc: _Doc, path: tuple[Any, ...], body: Any) -> EmailConfig:
    body = _mapping(doc, path, body)
    unknown = sorted(set(body) - _EMAIL_KEYS)
    if unknown:
        raise doc.error(path + (unknown[0],), f"unknown key (allowed: {', '.join(sorted(_EMAIL_KEYS))})")
    server = body.get("smtp_server")
    if not isinstance(server, str) or not server:
        raise doc.error(path + ("smtp_server",), "is required (a host name)")
    port = body.get("smtp_port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise doc.error(path + ("smtp_port",), f"must be a port number, got {port!r}")
    recipients = body.get("recipients")
    if not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) and "@" in r
                                                                      for r in recipients):
        raise doc.error(path + ("recipients",), "must be a non-empty list of e-mail addresses")
    username = _typed(doc, path, body, "username", str, "")
    return EmailConfig(
        smtp_server=server, smtp_port=port, recipients=tuple(recipients),
        use_tls=_typed(doc, path, body, "use_tls", bool, True), username=username,
        password=_typed(doc, path, body, "password", str, ""),
        password_env=_typed(doc, path, body, "password_env", str, ""),
        sender=_typed(doc, path, body, "sender", str, username if "@" in username else ""),
        events=_events(doc, path + ("events",), body["events"]) if "events" in body else frozenset(SEVERITIES),
        timeout_s=_typed(doc, path, body, "timeout", float, 10.0),
        send_resolved=_typed(doc, path, body, "send_resolved", bool, True))


def parse_alerting(text: str, source: str = "alerting.yaml") -> AlertingConfig:
    """Channels from the seed's `alerting:` block; `email:` may sit inside it or at the top level."""
    doc = _Doc(text, source)
    if doc.data is None:
        return AlertingConfig()
    top = _mapping(doc, (), doc.data)
    if set(top) - {"alerting", "email"}:
        raise doc.error((sorted(set(top) - {"alerting", "email"}, key=str)[0],), "unknown key")
    block = _mapping(doc, ("alerting",), top.get("alerting") or {})
    allowed = {"webhooks", "email", "alertmanager_url", "external_url"}
    if set(block) - allowed:
        raise doc.error(("alerting", sorted(set(block) - allowed, key=str)[0]), "unknown key")
    if "email" in block and "email" in top:
        raise doc.error(("email",), "is also set under alerting.email; keep one")
    hooks = block.get("webhooks") or []
    if not isinstance(hooks, list):
        raise doc.error(("alerting", "webhooks"), "must be a list")
    email_path = ("alerting", "email") if "email" in block else ("email",)
    email_body = block.get("email", top.get("email"))
    am_url = _typed(doc, ("alerting",), block, "alertmanager_url", str, "")
    if am_url and not am_url.startswith(("http://", "https://")):
        raise doc.error(("alerting", "alertmanager_url"), f"must be an http(s) URL, got {am_url!r}")
    return AlertingConfig(
        webhooks=tuple(_webhook(doc, i, hook) for i, hook in enumerate(hooks)),
        email=_email(doc, email_path, email_body) if email_body is not None else None,
        alertmanager_url=am_url, external_url=_typed(doc, ("alerting",), block, "external_url", str, ""))


def load_alerting(path: str | Path) -> AlertingConfig:
    """Channels from a file (see parse_alerting)."""
    return parse_alerting(Path(path).read_text(encoding="utf-8"), str(path))
