"""Alert actions: silence, acknowledge, end a silence, list them (storage/alert_silences.py)."""
from __future__ import annotations

import math
from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.monitoring.alerts import labelset
from ollama_server.services import services
from ollama_server.storage.alert_silences import AlertSilences

bp = Blueprint("alert_actions", __name__)
install(bp, PLAIN)

MAX_SILENCE_S = 30 * 86400.0
MAX_TEXT = 1000


def _silences() -> AlertSilences:
    silences = services().silences
    if silences is None:
        raise ApiError("unavailable", "alert silences are not configured")
    return silences


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True) if request.data else None
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    return body


def _alert(body: dict[str, Any]) -> str:
    """A known rule name (the alert rules the monitor evaluates)."""
    alert = body.get("alert")
    if not isinstance(alert, str) or not alert:
        raise ApiError("invalid_request", "alert is required: the name of an alert rule", param="alert")
    monitor = services().monitor
    known = sorted(rule.name for rule in monitor.rules) if monitor is not None else []
    if alert not in known:
        raise ApiError("invalid_request", f"alert: unknown alert rule {alert[:100]!r}; known: {', '.join(known)}",
                       param="alert")
    return alert


def _labels(body: dict[str, Any]) -> dict[str, str]:
    labels = body.get("labels", {})
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ApiError("invalid_request", "labels must be an object of string keys to string values",
                       param="labels")
    return labels


def _text(body: dict[str, Any], field: str, default: str) -> str:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ApiError("invalid_request", f"{field} must be a string of at most {MAX_TEXT} characters", param=field)
    return value


def _seconds(body: dict[str, Any]) -> float:
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not 0 < seconds <= MAX_SILENCE_S:
        raise ApiError("invalid_request", f"seconds must be a number greater than 0 and at most {int(MAX_SILENCE_S)} "
                                          "(30 days)", param="seconds")
    return float(seconds)


def _actor(body: dict[str, Any]) -> str:
    """Who asked: the body's `actor`, else the client's address."""
    return _text(body, "actor", request.remote_addr or "unknown")


def _stored(entry: dict[str, Any]):
    if entry.get("id") is None:
        raise ApiError("unavailable", f"the alert database is {entry.get('error', 'unavailable')}; try again")
    return jsonify(entry), 201


@bp.post("/api/alerts/silence")
def silence():
    """Quiet an alert's notifications for `seconds` (labels: a subset of the alert's; {} = every series)."""
    body = _body()
    alert, labels, seconds = _alert(body), _labels(body), _seconds(body)
    return _stored(_silences().silence(alert, labels, seconds, _actor(body), _text(body, "comment", "")))


@bp.post("/api/alerts/acknowledge")
def acknowledge():
    """Quiet a firing alert (exact labels) until it resolves."""
    body = _body()
    alert, labels = _alert(body), _labels(body)
    monitor = services().monitor
    collection = monitor.latest if monitor is not None else None
    firing = dict(collection.firing) if collection is not None else {}
    if (alert, labelset(labels)) not in firing:
        raise ApiError("invalid_request", f"alert {alert} with labels {labels} is not firing; only a firing alert "
                                          "can be acknowledged (silence it instead)", param="alert", status=409)
    return _stored(_silences().acknowledge(alert, labels, _actor(body), _text(body, "comment", "")))


@bp.delete("/api/alerts/silence/<int:silence_id>")
def unsilence(silence_id: int):
    """End a silence or an acknowledgement now."""
    silences = _silences()
    if not silences.unsilence(silence_id):
        if silences.get(silence_id) is None:
            raise ApiError("not_found", f"no silence with id {silence_id}")
        raise ApiError("invalid_request", f"silence {silence_id} is already over", status=409)
    return jsonify(silences.get(silence_id))


@bp.get("/api/alerts/silences")
def active():
    """The silences and acknowledgements in force."""
    silences = _silences()
    return jsonify({"silences": silences.active(), "store": silences.status()})
