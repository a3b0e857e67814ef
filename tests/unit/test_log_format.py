"""log_format: the JSON line's fields (the seed's shape), the text line, and the redaction of secrets."""
from __future__ import annotations

import json
import logging
import sys

import pytest

from ollama_server import log_format
from ollama_server.log_format import JsonLineFormatter
from ollama_server.log_format import LogContext
from ollama_server.log_format import TextFormatter
from ollama_server.monitoring.alert_rules import AlertingConfig
from ollama_server.monitoring.alert_rules import EmailConfig
from ollama_server.monitoring.alert_rules import WebhookConfig
from ollama_server.monitoring.notify import channels_from
from ollama_server.settings import SettingsError
from ollama_server.settings import build_settings

SEED_MOMENT = 1749328200.123  # 2025-06-07T20:30:00.123Z, the seed example's time


@pytest.fixture(autouse=True)
def clean_state():
    """No request context, no secrets and the JSON format once the test is done."""
    yield
    log_format.begin_request(None)
    log_format.redact.set_values(())
    log_format._format = "json"


def record(message: str, *args, level: int = logging.INFO, name: str = "ollama_server.api.handlers",
           exc_info=None, **extra) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    made.created, made.msecs = SEED_MOMENT, 123.0
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def line(made: logging.LogRecord) -> dict:
    text = JsonLineFormatter().format(made)
    assert "\n" not in text  # one object, one line
    return json.loads(text)


def settings_with(tmp_path, **values):
    return build_settings({"data_dir": str(tmp_path), **values})


# --- fields ------------------------------------------------------------------------------------------
def test_a_line_in_a_request_has_the_seed_fields_with_a_utc_millisecond_timestamp():
    context = LogContext(api="openai", endpoint="/api/chat/completions", remote_addr="localhost")
    context.name("7b4fa8e5-e2a9-4410-b43c-d071c8323fe1")
    context.model = "phi4:latest"
    log_format.begin_request(context)
    assert line(record("Handling %s request", "non-streaming")) == {
        "timestamp": "2025-06-07T20:30:00.123Z", "level": "INFO", "logger": "ollama_server.api.handlers",
        "request_id": "7b4fa8e5-e2a9-4410-b43c-d071c8323fe1", "message": "Handling non-streaming request",
        "extra": {"api": "openai", "model": "phi4:latest", "endpoint": "/api/chat/completions",
                  "remote_addr": "localhost"}}


def test_outside_a_request_the_request_id_is_null_and_extra_empty():
    found = line(record("collected", level=logging.WARNING, name="ollama_server.monitoring.collector"))
    assert found["request_id"] is None and found["extra"] == {}
    assert (found["level"], found["logger"]) == ("WARNING", "ollama_server.monitoring.collector")


def test_a_callers_extra_fills_the_request_fields_outside_a_request():
    found = line(record("reloaded", request_id="job-7", model="tiny:latest", api="companion"))
    assert found["request_id"] == "job-7" and found["extra"] == {"model": "tiny:latest", "api": "companion"}


def test_an_id_is_made_when_first_needed_and_a_later_name_keeps_the_earlier_one_in_extra():
    context = LogContext(api="ollama")
    log_format.begin_request(context)
    early = line(record("option ignored"))
    log_format.note_request_id("engine-id-1")
    late = line(record("done"))
    assert early["request_id"] and early["request_id"] != "engine-id-1"
    assert late["request_id"] == "engine-id-1" and late["extra"]["earlier_request_id"] == early["request_id"]


def test_a_name_given_before_any_line_leaves_no_earlier_id():
    log_format.begin_request(LogContext(api="openai"))
    log_format.note_request_id("chatcmpl-1")
    assert "earlier_request_id" not in line(record("x"))["extra"]


def test_an_exception_is_a_string_field_and_the_line_stays_one_line():
    try:
        raise RuntimeError("out of memory\nwhile loading")
    except RuntimeError:
        found = line(record("load failed\nsee below", level=logging.ERROR, exc_info=sys.exc_info()))
    assert found["message"] == "load failed\nsee below"
    assert found["exc_info"].startswith("Traceback") and "RuntimeError: out of memory" in found["exc_info"]


def test_the_text_line_has_time_level_logger_request_id_and_message():
    context = LogContext()
    context.name("req-9")
    log_format.begin_request(context)
    text = TextFormatter().format(record("hello %d", 5))
    assert text.endswith(" INFO ollama_server.api.handlers [req-9]: hello 5")
    log_format.begin_request(None)
    assert TextFormatter().format(record("bye")).endswith(" INFO ollama_server.api.handlers: bye")


def test_an_unknown_log_format_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(SettingsError, match="log_format"):
        settings_with(tmp_path, log_format="xml")
    with pytest.raises(ValueError, match="log_format"):
        log_format.formatter("xml")
    assert settings_with(tmp_path, log_format="TEXT").log_format == "text"


def test_a_new_format_reaches_handlers_already_installed(tmp_path):
    handler = log_format.own(logging.StreamHandler(sys.stderr), "INFO")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        log_format.configure_logging(settings_with(tmp_path, log_format="text"))
        assert isinstance(handler.formatter, TextFormatter)
        log_format.configure_logging(settings_with(tmp_path))
        assert isinstance(handler.formatter, JsonLineFormatter)
    finally:
        root.removeHandler(handler)


def test_apply_log_level_sets_the_root_and_our_handlers_but_not_others():
    ours = log_format.own(logging.StreamHandler(sys.stderr), "INFO")
    theirs = logging.StreamHandler(sys.stderr)
    theirs.setLevel(logging.ERROR)
    root = logging.getLogger()
    level = root.level
    root.addHandler(ours)
    root.addHandler(theirs)
    try:
        log_format.apply_log_level("DEBUG")
        assert (root.level, ours.level, theirs.level) == (logging.DEBUG, logging.DEBUG, logging.ERROR)
        with pytest.raises(ValueError, match="LOUD"):
            log_format.apply_log_level("LOUD")
    finally:
        root.removeHandler(ours)
        root.removeHandler(theirs)
        root.setLevel(level)


# --- redaction ---------------------------------------------------------------------------------------
def test_the_api_key_is_redacted_from_the_message_its_arguments_and_the_exception(tmp_path):
    key = "sk-live-4f9c2e7d1a"
    log_format.configure_logging(settings_with(tmp_path, api_key=key))
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        found = line(record("login with %s failed", key, exc_info=sys.exc_info()))
    assert key not in json.dumps(found)
    assert found["message"] == "login with *** failed" and "bad key ***" in found["exc_info"]
    assert key not in TextFormatter().format(record("key=%s", key))


@pytest.mark.parametrize("text,shown", [
    ("Authorization: Bearer abc.DEF-123_xyz", "Authorization: Bearer ***"),
    ("headers={'Authorization': 'Bearer tok123456'}", "headers={'Authorization': 'Bearer ***'}"),
    ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic ***"),
    ("X-API-Key: k-9876543210", "X-API-Key: ***"),
    ("GET /v1/models?x-api-key=k-9876543210&limit=5", "GET /v1/models?x-api-key=***&limit=5"),
    ("sent bearer eyJhbGciOi.payload.sig to the proxy", "sent bearer *** to the proxy"),
])
def test_credential_header_values_are_redacted_even_when_not_configured(text, shown):
    assert line(record(text))["message"] == shown


def test_ordinary_text_about_keys_is_left_alone():
    message = "metrics_require_key is off; 3 tokens; api key missing"
    assert line(record(message))["message"] == message


def test_a_secret_too_short_to_tell_from_text_is_not_searched_for(tmp_path):
    log_format.configure_logging(settings_with(tmp_path, api_key="abc"))
    assert line(record("abcdef"))["message"] == "abcdef"


def test_the_alert_channels_passwords_urls_and_header_values_are_redacted(tmp_path):
    webhook = "https://hooks.example.invalid/services/T000/B000/XyZ123secretTOKEN99"
    config = AlertingConfig(
        webhooks=(WebhookConfig(url=webhook, headers=(("Authorization", "Token token=pd-routing-77"),)),),
        email=EmailConfig(smtp_server="smtp.example.invalid", recipients=("a@example.invalid",),
                          username="alerts", password="smtp-pass-5150"),
        alertmanager_url="http://admin:am-pass-8080@alertmanager.example.invalid:9093")
    log_format.configure_logging(settings_with(tmp_path), channels_from(config))
    for secret in (webhook, "XyZ123secretTOKEN99", "Token token=pd-routing-77", "smtp-pass-5150", "am-pass-8080"):
        assert secret not in line(record("delivery to %s failed", secret))["message"]
    assert line(record("POST %s", "/services/T000/B000/XyZ123secretTOKEN99"))["message"] == \
        "POST /services/T000/B000/***"


def test_a_webhook_paths_short_route_names_are_not_taken_for_tokens(tmp_path):
    config = AlertingConfig(webhooks=(WebhookConfig(url="http://127.0.0.1:9000/alerts?to=ops"),))
    log_format.configure_logging(settings_with(tmp_path), channels_from(config))
    assert line(record("GET /api/alerts 200"))["message"] == "GET /api/alerts 200"
    assert line(record("to http://127.0.0.1:9000/alerts?to=ops"))["message"] == "to ***"


def test_an_smtp_password_read_from_the_environment_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("LOG_TEST_SMTP_PASSWORD", "env-smtp-secret-42")
    config = AlertingConfig(email=EmailConfig(smtp_server="smtp.example.invalid", recipients=("a@example.invalid",),
                                              username="alerts", password_env="LOG_TEST_SMTP_PASSWORD"))
    log_format.configure_logging(settings_with(tmp_path), channels_from(config))
    assert line(record("login env-smtp-secret-42 refused"))["message"] == "login *** refused"


def test_the_console_handler_is_installed_once_on_an_unconfigured_root_and_never_beside_others(tmp_path):
    root = logging.getLogger()
    kept, level = root.handlers[:], root.level
    root.handlers = []  # as in the serving process: nobody has configured logging yet
    try:
        settings = settings_with(tmp_path, log_level="WARNING")
        assert log_format.install_console_handler(settings) is True
        assert log_format.install_console_handler(settings) is True  # a second app in the process
        [console] = root.handlers
        assert console.stream is sys.stdout and isinstance(console.formatter, JsonLineFormatter)
        assert root.level == console.level == logging.WARNING
        root.handlers = [logging.NullHandler()]  # pytest's, an embedding program's
        assert log_format.install_console_handler(settings) is False and len(root.handlers) == 1
    finally:
        root.handlers = kept
        root.setLevel(level)
