"""Acknowledge or silence an alert from the overview; answers the re-rendered alerts fragment."""
from __future__ import annotations

import json
import math

from flask import render_template
from flask import request

from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.fragments import version_of
from ollama_server.dashboard.overview import alerts_data
from ollama_server.services import services

MAX_SILENCE_S = 30 * 86400


def actor() -> str:
    """Who did it, for the record: the dashboard user (sessions are per key, not per person) and address."""
    return f"dashboard ({request.remote_addr or 'unknown'})"


def _target() -> tuple[str, dict[str, str]]:
    name = request.form.get("alert", "")
    try:
        labels = json.loads(request.form.get("labels", "{}") or "{}")
    except ValueError:
        labels = None
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("labels must be a JSON object of strings")
    if not name:
        raise ValueError("alert is required")
    return name, labels


def _answer(message: str, kind: str = "", status: int = 200):
    data = {**alerts_data(), "message": message, "message_kind": kind}
    return render_template("partials/alerts.html", part={**data, "version": version_of(data)}), status


@bp.post("/actions/alerts/acknowledge")
def acknowledge_alert():
    silences = services().silences
    try:
        name, labels = _target()
        silences.acknowledge(name, labels, actor())
    except (ValueError, LookupError) as exc:
        return _answer(str(exc), "error", 400)
    return _answer(f"Acknowledged {name}.")


@bp.post("/actions/alerts/silence")
def silence_alert():
    silences = services().silences
    try:
        name, labels = _target()
        try:
            seconds = float(request.form.get("seconds", ""))
        except ValueError:
            raise ValueError("seconds must be a number") from None
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_SILENCE_S:
            raise ValueError("seconds must be between 1 second and 30 days")
        silences.silence(name, labels, seconds, actor(), request.form.get("comment", ""))
    except (ValueError, LookupError) as exc:
        return _answer(str(exc), "error", 400)
    return _answer(f"Silenced {name} for {seconds / 3600:g} h.")
