"""Zero-downtime configuration: SIGHUP or an edited settings file applies while a stream is in flight; an invalid
file is refused and the running configuration kept."""
from __future__ import annotations

import json
import os
import signal

import requests

from tests.conftest import LiveServer
from tests.waiting import wait_for

BASE = {"default_context_size": 1024, "parallel_slots": 2, "log_level": "INFO"}


def write_config(server: LiveServer, **values) -> None:
    lines = [f"{key}: {value}" for key, value in {**BASE, **values}.items()]
    tmp = server.config.with_name(server.config.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, server.config)  # whole or not at all, as an editor's save is


def setting(server: LiveServer, name: str):
    return requests.get(server.url + "/config", timeout=30).json()["settings"][name]


def test_sighup_and_file_edits_apply_without_dropping_a_stream_and_a_bad_file_is_refused(tmp_path):
    with LiveServer(tmp_path, {**BASE, "default_max_tokens": 7}) as server:
        assert setting(server, "default_max_tokens") == 7
        stream = requests.post(server.url + "/v1/completions", stream=True, timeout=120,
                               json={"prompt": "Count slowly:", "max_tokens": 120, "ignore_eos": True,
                                     "stream": True, "temperature": 0, "stream_options": {"include_usage": True}})
        lines = stream.iter_lines()  # kept: the stream's own iterator, read to its end below
        for line in lines:  # the first event: the stream is under way
            if line.startswith(b"data: "):
                break

        write_config(server, default_max_tokens=9)
        os.kill(server.process.pid, signal.SIGHUP)  # the gunicorn master forwards it to the worker
        wait_for(lambda: setting(server, "default_max_tokens") == 9, "SIGHUP to apply the file", 60)

        write_config(server, default_max_tokens=-5)  # invalid: refused, 9 kept
        os.kill(server.process.pid, signal.SIGHUP)
        status = wait_for(lambda: (lambda s: s if s["status"] == "rejected" else None)(
            requests.get(server.url + "/status", timeout=30).json()["config_reload"]), "the refusal", 60)
        assert "default_max_tokens" in status["error"]
        assert setting(server, "default_max_tokens") == 9
        assert requests.get(server.url + "/health", timeout=30).status_code == 200

        write_config(server, default_max_tokens=11, metrics_interval=7)  # no signal: the edit alone; the interval waits
        # The report, not the setting: the settings are swapped a moment before the reload records its outcome.
        reload = wait_for(lambda: (lambda s: s if s["status"] == "applied" else None)(
            requests.get(server.url + "/status", timeout=30).json()["config_reload"]), "the edited file to apply", 60)
        assert reload["applied"] == ["default_max_tokens"] and reload["restart_required"] == ["metrics_interval"]
        assert setting(server, "default_max_tokens") == 11

        events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: ") and line != b"data: [DONE]"]
        finish = [choice["finish_reason"] for event in events for choice in event["choices"] if choice["finish_reason"]]
        usage = [event["usage"] for event in events if event.get("usage")]
        # The stream in flight across three reloads ran to its full length (however its events were grouped).
        assert finish == ["length"] and usage[-1]["completion_tokens"] == 120
