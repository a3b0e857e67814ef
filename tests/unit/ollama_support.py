"""Shared helpers for the Ollama route tests."""
from __future__ import annotations

import json
import re

from ollama_server.services import EXTENSION_KEY

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
           "eval_duration")


def ndjson(response) -> list[dict]:
    """The NDJSON lines of a response (which must end with a newline)."""
    text = response.get_data(as_text=True)
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def post_raw(client, path, payload):
    """POST JSON, or raw bytes as application/json."""
    if isinstance(payload, bytes):
        return client.post(path, data=payload, content_type="application/json")
    return client.post(path, json=payload)


def engine_of(client):
    return client.application.extensions[EXTENSION_KEY].engine
