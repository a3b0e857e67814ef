"""log_level at run time: POST /api/dashboard/configure and the settings-file reload change the root logger's
level and our handlers' at once (DEBUG lines appear and vanish), reloading no model; log_format switches too."""
from __future__ import annotations

import json
import logging

import pytest

from ollama_server import log_format
from ollama_server.config_reload import ConfigReloader
from ollama_server.log_files import install_log_files
from ollama_server.services import EXTENSION_KEY
from tests.log_capture import Captured
from tests.log_capture import on_root

CONFIGURE = "/api/dashboard/configure"
# num_thread is accepted and ignored: Ollama's translation says so at DEBUG, an unknown option at WARNING.
DEBUG_OPTION = {"num_thread": 2}
WARNING_OPTION = {"no_such_option": 1}


@pytest.fixture
def lines():
    """A handler on the root logger; afterwards the root's level, handlers and the JSON format as they were."""
    handler = Captured()
    with on_root(handler, level=logging.INFO):
        yield handler
    log_format._format = "json"


def svc(app):
    return app.extensions[EXTENSION_KEY]


def generate(client, fake_backend, options: dict) -> None:
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                  "options": options})
    assert response.status_code == 200


def said(handler: Captured, part: str) -> bool:
    return any(part in message for message in handler.messages)


def write_config(tmp_path, app, **values):
    """A settings file holding the app's own values except `values` (so nothing but those changes)."""
    settings = svc(app).settings
    base = {"models_dir": list(settings.models_dir), "data_dir": settings.data_dir,
            "default_context_size": settings.default_context_size, "parallel_slots": settings.parallel_slots}
    path = tmp_path / "service_config.yaml"
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in {**base, **values}.items()))
    return path


def test_configure_turns_debug_lines_on_and_off(make_app, fake_backend, lines):
    app = make_app()
    client = app.test_client()
    generate(client, fake_backend, DEBUG_OPTION)
    assert not said(lines, "num_thread is accepted")  # INFO: no DEBUG line
    response = client.post(CONFIGURE, json={"log_level": "debug"})
    assert response.status_code == 200 and response.get_json()["config"]["log_level"] == "DEBUG"
    assert logging.getLogger().level == logging.DEBUG and svc(app).settings.log_level == "DEBUG"
    generate(client, fake_backend, DEBUG_OPTION)
    assert said(lines, "num_thread is accepted")
    lines.messages.clear()
    assert client.post(CONFIGURE, json={"log_level": "WARNING"}).status_code == 200
    assert logging.getLogger().level == logging.WARNING
    generate(client, fake_backend, {**DEBUG_OPTION, **WARNING_OPTION})
    assert not said(lines, "num_thread is accepted") and said(lines, "invalid option provided: no_such_option")


def test_a_log_level_change_reloads_no_model_and_is_a_version(make_app, fake_backend, lines):
    app = make_app()
    client = app.test_client()
    generate(client, fake_backend, {})
    loads = len(fake_backend.loaded)
    body = client.post(CONFIGURE, json={"log_level": "ERROR"}).get_json()
    assert body["applied"]["changes"] == {"log_level": {"old": "INFO", "new": "ERROR"}}
    assert svc(app).engine.wait_for_reload(30.0)  # a failure guard only: nothing is reloading
    assert svc(app).engine.reload_status()["models"] == {"tiny:latest": "ready"}
    assert len(fake_backend.loaded) == loads
    baseline = client.get("/api/dashboard/config/versions").get_json()["versions"][-1]
    assert baseline["source"] == "startup" and baseline["values"]["log_level"] == "INFO"
    assert client.post("/api/dashboard/config/rollback", json={"version": baseline["id"]}).status_code == 200
    assert logging.getLogger().level == logging.INFO and svc(app).settings.log_level == "INFO"


@pytest.mark.parametrize("value", ["LOUD", 10, None, ["DEBUG"]])
def test_configure_returns_400_naming_log_level_when_it_is_not_a_level(make_app, lines, value):
    client = make_app().test_client()
    response = client.post(CONFIGURE, json={"log_level": value})
    assert response.status_code == 400
    assert "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in response.get_json()["error"]["fields"]["log_level"]
    assert logging.getLogger().level == logging.INFO


def test_the_settings_file_reload_changes_the_level(make_app, fake_backend, lines, tmp_path):
    app = make_app()
    client = app.test_client()
    reloader = ConfigReloader(svc(app), write_config(tmp_path, app, log_level="DEBUG"))
    assert reloader.reload("test")["applied"] == ["log_level"]
    assert logging.getLogger().level == logging.DEBUG
    generate(client, fake_backend, DEBUG_OPTION)
    assert said(lines, "num_thread is accepted")
    lines.messages.clear()
    write_config(tmp_path, app, log_level="ERROR")
    assert reloader.reload("test")["applied"] == ["log_level"]
    generate(client, fake_backend, {**DEBUG_OPTION, **WARNING_OPTION})
    assert lines.messages == [] and logging.getLogger().level == logging.ERROR


def test_the_log_files_follow_the_level_and_the_format(make_app, fake_backend, lines, tmp_path):
    app = make_app()
    client = app.test_client()
    logs = tmp_path / "logs"
    install_log_files(logs, "INFO")
    assert client.post(CONFIGURE, json={"log_level": "DEBUG"}).status_code == 200
    generate(client, fake_backend, DEBUG_OPTION)
    reloader = ConfigReloader(svc(app), write_config(tmp_path, app, log_level="DEBUG", log_format="text"))
    assert reloader.reload("test")["applied"] == ["log_format"]
    logging.getLogger("ollama_server.tests").debug("now in text")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = (logs / "api_server.log").read_text().splitlines()
    debug_line = next(line for line in written if "num_thread is accepted" in line)
    assert json.loads(debug_line)["level"] == "DEBUG"
    assert written[-1].endswith(" DEBUG ollama_server.tests: now in text")


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_the_schedulers_per_run_lines_stay_out_of_the_log_unless_debug(lines, level):
    log_format.apply_log_level(level)
    logging.getLogger("apscheduler.executors.default").info('Job "unload idle models" executed successfully')
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    assert lines.messages == ["Run time of job was missed"]
    assert logging.getLogger("llama.cpp").level == logging.WARNING  # llama.cpp's load chatter too


def test_at_debug_the_chatty_libraries_speak_too(lines):
    log_format.apply_log_level("DEBUG")
    logging.getLogger("apscheduler.executors.default").info('Job "unload idle models" executed successfully')
    assert lines.messages == ['Job "unload idle models" executed successfully']
    assert logging.getLogger("llama.cpp").level == logging.DEBUG
    log_format.apply_log_level("INFO")
