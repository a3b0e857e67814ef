"""Alertmanager shapes: label fingerprints, group keys, the webhook v4 body and the /api/v2/alerts body."""
from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Optional
from typing import Sequence

from ollama_server.monitoring.alerts import FIRING
from ollama_server.monitoring.alerts import RESOLVED
from ollama_server.monitoring.alerts import Transition

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
SEPARATOR = b"\xff"
# Go's zero time, which Alertmanager prints as the endsAt of a still-firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"
GROUP_BY = ("alertname",)


def fnv1a64(data: bytes) -> int:
    """FNV-1a, 64 bit."""
    h = FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    """prometheus/common `labelSetToFingerprint`: FNV-1a 64 over sorted `name 0xFF value 0xFF`, as %016x."""
    data = b"".join(k.encode() + SEPARATOR + v.encode() + SEPARATOR for k, v in sorted(labels.items()))
    return "%016x" % fnv1a64(data)


def labels_string(labels: Mapping[str, str]) -> str:
    """Go `model.LabelSet.String()`: `{a="1", b="2"}`, sorted, values quoted."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


def group_key(group_labels: Mapping[str, str], route_key: str = "{}") -> str:
    """Alertmanager's groupKey: route key, ':', the group labels (stable across re-sends)."""
    return f"{route_key}:{labels_string(group_labels)}"


def rfc3339(at: float) -> str:
    """UTC RFC 3339 with a Z, fractional seconds only when present."""
    moment = datetime.fromtimestamp(at, timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def annotations(t: Transition, severity: Optional[str] = None) -> dict[str, str]:
    """A summary and description for one alert (not part of its identity)."""
    severity = severity or t.severity
    threshold = t.rule.critical if severity == "critical" else t.rule.warning
    where = "".join(f" {k}={v}" for k, v in t.labels)
    summary = f"{t.rule.name} {severity}: {t.rule.metric}{where} = {t.value:g}"
    if t.new == RESOLVED:
        summary = f"{t.rule.name} resolved: {t.rule.metric}{where} = {t.value:g}"
    description = (f"{t.rule.metric} {t.rule.comparison} {threshold:g} for at least {t.rule.duration_s:g}s"
                   if threshold is not None else t.rule.metric)
    return {"summary": summary, "description": description}


def alerts_of(t: Transition, generator_url: str = "") -> list[dict[str, Any]]:
    """The alerts one transition concerns.

    Severity is a label, so it is part of the fingerprint: a severity change resolves the alert of the
    old severity and fires the new one, as two Prometheus rules would.
    """
    alerts = []
    if t.previous_severity and t.previous_severity != t.severity:
        labels = t.alert_labels(t.previous_severity)
        alerts.append({"status": RESOLVED, "labels": labels, "annotations": annotations(t, t.previous_severity),
                       "startsAt": rfc3339(t.started_at), "endsAt": rfc3339(t.at),
                       "generatorURL": generator_url, "fingerprint": fingerprint(labels)})
    labels = t.alert_labels()
    status = RESOLVED if t.new == RESOLVED else FIRING
    alerts.append({"status": status, "labels": labels, "annotations": annotations(t),
                   "startsAt": rfc3339(t.started_at), "endsAt": rfc3339(t.at) if status == RESOLVED else ZERO_TIME,
                   "generatorURL": generator_url, "fingerprint": fingerprint(labels)})
    return alerts


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {k: v for k, v in maps[0].items() if all(m.get(k) == v for m in maps[1:])}


def webhook_payload(transitions: Iterable[Transition], receiver: str, external_url: str = "",
                    max_alerts: int = 0) -> dict[str, Any]:
    """The Alertmanager webhook v4 message for the given transitions (one group)."""
    transitions = list(transitions)
    alerts = [alert for t in transitions for alert in alerts_of(t, external_url)]
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated, alerts = len(alerts) - max_alerts, alerts[:max_alerts]
    common_labels = _common([a["labels"] for a in alerts])
    group_labels = {k: common_labels[k] for k in GROUP_BY if k in common_labels}
    reasons = sorted({t.reason for t in transitions})
    return {
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": truncated,
        "status": FIRING if any(a["status"] == FIRING for a in alerts) else RESOLVED,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "notification_reason": ",".join(reasons),
        "alerts": alerts,
    }


def api_v2_alerts(transitions: Iterable[Transition], generator_url: str = "") -> list[dict[str, Any]]:
    """The body for POST /api/v2/alerts: firing alerts without endsAt, resolved ones with it."""
    posted = []
    for t in transitions:
        for alert in alerts_of(t, generator_url):
            item = {k: alert[k] for k in ("labels", "annotations", "startsAt", "generatorURL")}
            if alert["status"] == RESOLVED:
                item["endsAt"] = alert["endsAt"]
            posted.append(item)
    return posted
