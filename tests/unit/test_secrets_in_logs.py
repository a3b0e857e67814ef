"""Secrets never shown: the API key (also the dashboard's password), SMTP passwords (inline and from the
environment), webhook URLs and header values, Alertmanager credentials, absent from every log line (the real
formatters, at DEBUG, and the log files) and from every GET answer of the API, /config and the dashboard."""
from __future__ import annotations

import logging
import re

import pytest

from ollama_server.log_files import install_log_files
from ollama_server.log_format import JsonLineFormatter
from ollama_server.log_format import TextFormatter
from ollama_server.services import EXTENSION_KEY
from tests.log_capture import Captured
from tests.log_capture import on_root

API_KEY = "sk-test-KEY-9f8e7d6c5b4a"
SMTP_PASSWORD = "smtp-PASS-1a2b3c4d"
SMTP_ENV_PASSWORD = "env-SMTP-5e6f7a8b"
HOOK_TOKEN = "hook-SECRET-0c9d8e"
HOOK_URL = "https://hooks.example.invalid/services/T0/B0/" + HOOK_TOKEN
HOOK_HEADER = "Token token=pd-HEADER-7f6e5d"
AM_PASSWORD = "am-PASS-4c3b2a"
SECRETS = (API_KEY, SMTP_PASSWORD, SMTP_ENV_PASSWORD, HOOK_URL, HOOK_TOKEN, HOOK_HEADER, AM_PASSWORD)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
GUARD_S = 30.0  # failure guard only


@pytest.fixture
def captured():
    """A JSON and a text handler on the root logger at DEBUG; afterwards the root as it was."""
    handlers = [Captured(JsonLineFormatter()), Captured(TextFormatter())]
    with on_root(*handlers, level=logging.DEBUG):
        yield handlers


@pytest.fixture
def app(make_app, tmp_path):
    channels = tmp_path / "alerting.yaml"
    channels.write_text(f"""alerting:
  webhooks:
    - url: "{HOOK_URL}"
      headers:
        Authorization: "{HOOK_HEADER}"
  alertmanager_url: "http://admin:{AM_PASSWORD}@alertmanager.example.invalid:9093"
email:
  smtp_server: "smtp.example.invalid"
  username: "alerts"
  password: "{SMTP_PASSWORD}"
  recipients: ["oncall@example.invalid"]
""")
    return make_app(api_key=API_KEY, alert_channels_file=str(channels))


def assert_no_secret(text: str, where: str) -> None:
    shown = [secret for secret in SECRETS if secret in text]
    assert shown == [], f"{where} shows {shown}"


def csrf_of(html: str) -> str:
    match = re.search(r"""hx-headers='\{"X-CSRF-Token": "([^"]+)"\}'""", html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def drive(app, fake_backend, planted: bool = True) -> None:
    """Requests that carry the key in every header it may come in; `planted`: also in messages that get logged
    (an ignored option's name, a load error), which the answers quote as the caller or the loader wrote them."""
    client = app.test_client()
    fake_backend.enqueue("hello")
    assert client.post("/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    fake_backend.enqueue("hello")
    assert client.post("/v1/chat/completions", json={**CHAT, "stream": True},
                       headers={"X-API-Key": API_KEY, **AUTH}).status_code == 200
    assert client.post("/v1/chat/completions", json=CHAT,
                       headers={"Authorization": f"Bearer {API_KEY}-wrong"}).status_code == 401
    if planted:
        # Ollama logs the name of an option it ignores: here a caller pasted the key as one.
        fake_backend.enqueue("hi")
        assert client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                  "options": {API_KEY: 1}}, headers=AUTH).status_code == 200
        # A load failure whose message holds secrets is logged.
        fake_backend.load_error = RuntimeError(f"loader refused {API_KEY} and {SMTP_PASSWORD}")
        assert client.post("/v1/completions", json={"model": "big", "prompt": "x"},
                           headers=AUTH).status_code >= 500
        fake_backend.load_error = None
    assert client.post("/api/dashboard/configure", json={"log_level": "DEBUG", "note": "debug for a while"},
                       headers=AUTH).status_code == 200
    token = csrf_of(client.get("/dashboard/login").text)
    assert client.post("/dashboard/login", data={"api_key": API_KEY, "csrf_token": token}).status_code == 302


def get_answers(app) -> dict[str, str]:
    """Every GET route without parameters, as an authenticated API client and a logged-in dashboard user see it."""
    client = app.test_client()
    token = csrf_of(client.get("/dashboard/login").text)
    client.post("/dashboard/login", data={"api_key": API_KEY, "csrf_token": token})
    answers = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.endpoint == "static" or "/ws/" in rule.rule:
            continue
        response = client.get(rule.rule, headers=AUTH)
        answers[rule.rule] = response.get_data(as_text=True)
        response.close()
    return answers


def test_no_secret_reaches_a_log_line_at_debug(app, fake_backend, captured):
    drive(app, fake_backend)
    lines = [line for handler in captured for line in handler.lines]
    assert any("loader refused ***" in line for line in lines)  # the lines were written, redacted
    assert any("invalid option provided: *** (ignored)" in line for line in lines)
    for line in lines:
        assert_no_secret(line, f"log line {line[:120]!r}")


def test_no_secret_reaches_the_log_files(app, fake_backend, captured):
    logs = app.extensions[EXTENSION_KEY].jobs.paths.logs_dir
    install_log_files(logs, "DEBUG")
    drive(app, fake_backend)
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(logs.glob("*.log"))
    assert files and any(path.stat().st_size for path in files)
    for path in files:
        assert_no_secret(path.read_text(), str(path.name))
    served = app.test_client().get("/logs/api_server?lines=10000", headers=AUTH).get_json()["lines"]
    assert served and any("***" in line for line in served)
    assert_no_secret("\n".join(served), "/logs/api_server")


def test_no_get_answer_shows_a_secret(app, fake_backend, captured):
    drive(app, fake_backend, planted=False)
    app.extensions[EXTENSION_KEY].monitor.collect_once()  # the monitoring routes answer from a collection
    answers = get_answers(app)
    assert {"/config", "/status", "/diag", "/api/dashboard/config", "/dashboard/config"} <= set(answers)
    assert '"api_key":"***"' in answers["/config"].replace(" ", "")
    for path, text in answers.items():
        assert_no_secret(text, path)


def test_an_smtp_password_from_the_environment_is_redacted_too(make_app, tmp_path, monkeypatch, captured):
    monkeypatch.setenv("SECRETS_TEST_SMTP_PASSWORD", SMTP_ENV_PASSWORD)
    channels = tmp_path / "alerting.yaml"
    channels.write_text("""email:
  smtp_server: "smtp.example.invalid"
  username: "alerts"
  password_env: "SECRETS_TEST_SMTP_PASSWORD"
  recipients: ["oncall@example.invalid"]
""")
    make_app(alert_channels_file=str(channels))
    logging.getLogger("ollama_server.tests").error("SMTP login with %s refused", SMTP_ENV_PASSWORD)
    for handler in captured:
        assert handler.lines[-1].count("***") == 1
        assert_no_secret(handler.lines[-1], "the SMTP line")
