"""Dashboard actions through the Flask test client: configuration apply / preset / rollback, alert acknowledge
and silence, and the model actions; each answers its re-rendered fragment, a bad value 4xx with its message."""
from __future__ import annotations

import logging
import re

import pytest

from ollama_server.dashboard.config import as_form
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import FakeNvml


def svc(app):
    return app.extensions[EXTENSION_KEY]


class Dashboard:
    """A test client that sends the session's CSRF token with every POST, as htmx does."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        page = self.client.get("/dashboard/").text
        self.token = re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)

    def post(self, path: str, data: dict):
        return self.client.post(path, data=data, headers={"X-CSRF-Token": self.token, "HX-Request": "true"})

    def running_form(self) -> dict[str, str]:
        """The configuration form as the page fills it: every field with its running value."""
        with self.app.app_context():
            return as_form(svc(self.app).config.current())


@pytest.fixture
def dash(make_app):
    app = make_app(nvml=FakeNvml("four_detailed"))
    svc(app).monitor.collect_once()
    return Dashboard(app)


def field_error(html: str, field: str) -> str:
    match = re.search(rf'data-error-for="{field}">([^<]*)<', html)
    assert match, f"no message next to {field}"
    return match.group(1)


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("gpu_layers", "abc", "must be an integer"),
    ("tensor_split", "0.5,0.5", "has 2 entries but 4 GPUs are present"),
    ("context_size", "5", "must be at least 16"),
])
def test_a_bad_config_value_answers_422_with_the_message_next_to_its_field_and_changes_nothing(dash, field, value,
                                                                                              message):
    before = svc(dash.app).settings
    versions_before = svc(dash.app).config.versions()
    response = dash.post("/dashboard/actions/config/apply", {**dash.running_form(), field: value})
    assert response.status_code == 422
    assert message in field_error(response.text, field)
    assert "Nothing was changed" in response.text
    assert svc(dash.app).settings == before
    assert svc(dash.app).config.versions() == versions_before


def test_a_good_apply_changes_the_running_settings_and_records_a_version(dash):
    response = dash.post("/dashboard/actions/config/apply", {**dash.running_form(), "context_size": "512",
                                                              "note": "longer prompts"})
    assert response.status_code == 200 and "Applied version" in response.text
    assert svc(dash.app).settings.default_context_size == 512
    newest = svc(dash.app).config.versions()[0]
    assert newest["changes"] == {"context_size": {"old": 256, "new": 512}}
    assert newest["note"] == "longer prompts" and newest["actor"].startswith("dashboard")
    status = dash.client.get("/dashboard/partials/config-status").text
    assert re.search(r'data-field="context_size">512<', status)


def test_the_log_level_is_chosen_from_a_list_and_applies_at_once(dash):
    root = logging.getLogger()
    level = root.level
    try:
        page = dash.post("/dashboard/actions/config/preview", dash.running_form()).text
        assert re.search(r'<select id="cfg-log_level" name="log_level"[^>]*>', page)
        assert "<option selected>INFO</option>" in page and "<option>DEBUG</option>" in page
        response = dash.post("/dashboard/actions/config/apply", {**dash.running_form(), "log_level": "DEBUG"})
        assert response.status_code == 200 and "Applied version" in response.text
        assert svc(dash.app).settings.log_level == "DEBUG" and root.level == logging.DEBUG
        assert svc(dash.app).config.versions()[0]["changes"] == {"log_level": {"old": "INFO", "new": "DEBUG"}}
    finally:
        root.setLevel(level)


def test_a_log_level_that_is_not_a_level_answers_422_next_to_its_field(dash):
    response = dash.post("/dashboard/actions/config/apply", {**dash.running_form(), "log_level": "LOUD"})
    assert response.status_code == 422
    assert "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in field_error(response.text, "log_level")
    assert svc(dash.app).settings.log_level == "INFO"


def test_a_run_time_change_says_a_restart_brings_the_file_values_back_and_gives_the_yaml(dash):
    assert "restart-notice" not in dash.client.get("/dashboard/partials/config-status").text
    dash.post("/dashboard/actions/config/apply", {**dash.running_form(), "context_size": "512"})
    status = dash.client.get("/dashboard/partials/config-status").text
    assert 'data-testid="restart-notice"' in status and "default_context_size: 512" in status
    rollback_to = svc(dash.app).config.versions()[-1]["id"]  # the startup values
    dash.post("/dashboard/actions/config/rollback", {"version": str(rollback_to)})
    assert "restart-notice" not in dash.client.get("/dashboard/partials/config-status").text


def test_a_preset_fills_the_form_with_its_values_and_does_not_apply_them(dash):
    before = svc(dash.app).settings
    response = dash.post("/dashboard/actions/config/preset", {"preset": "high_performance"})
    assert response.status_code == 200
    assert re.search(r'name="context_size" value="8192"', response.text)
    assert re.search(r'name="parallel_slots" value="8"', response.text)
    assert re.search(r'name="preset" value="high_performance"', response.text)
    assert svc(dash.app).settings == before and svc(dash.app).config.versions() == []


def test_an_unknown_preset_answers_422_with_the_message(dash):
    response = dash.post("/dashboard/actions/config/preset", {"preset": "turbo"})
    assert response.status_code == 422 and "unknown preset &#39;turbo&#39;" in response.text


def test_rollback_restores_the_old_values(dash):
    dash.post("/dashboard/actions/config/apply", {**dash.running_form(), "context_size": "512"})
    assert svc(dash.app).settings.default_context_size == 512
    startup = svc(dash.app).config.versions()[-1]
    assert startup["source"] == "startup" and startup["values"]["context_size"] == 256
    response = dash.post("/dashboard/actions/config/rollback", {"version": str(startup["id"])})
    assert response.status_code == 200 and f"Rolled back to version {startup['id']}" in response.text
    assert svc(dash.app).settings.default_context_size == 256
    assert svc(dash.app).config.versions()[0]["rollback_of"] == startup["id"]


def test_rollback_of_an_unknown_version_answers_404(dash):
    response = dash.post("/dashboard/actions/config/rollback", {"version": "999"})
    assert response.status_code == 404 and "no configuration version 999" in response.text


def test_rollback_of_a_version_that_is_not_a_number_answers_422(dash):
    response = dash.post("/dashboard/actions/config/rollback", {"version": "latest"})
    assert response.status_code == 422 and "version must be a number" in response.text


# --- alerts ---------------------------------------------------------------------------------------

@pytest.fixture
def alerting(make_app, tmp_path):
    """GPU 0 of four_detailed runs at 83 °C: above a warning of 80, so gpu_temperature is pending."""
    rules = tmp_path / "alerts.yaml"
    rules.write_text("alerts:\n  gpu_temperature:\n    warning: 80\n    critical: 90\n    duration: 60\n")
    app = make_app(nvml=FakeNvml("four_detailed"), alert_rules_file=str(rules))
    svc(app).monitor.collect_once()
    dash = Dashboard(app)
    assert 'data-alert="gpu_temperature"' in dash.client.get("/dashboard/partials/alerts").text
    return dash


def test_acknowledge_answers_the_alerts_fragment_showing_the_acknowledgement(alerting):
    response = alerting.post("/dashboard/actions/alerts/acknowledge",
                             {"alert": "gpu_temperature", "labels": '{"gpu": "0"}'})
    assert response.status_code == 200 and 'id="alerts"' in response.text
    assert "Acknowledged gpu_temperature." in response.text
    assert re.search(r'data-testid="alert-quiet">acknowledged', response.text)


def test_silence_answers_the_alerts_fragment_with_the_silence(alerting):
    response = alerting.post("/dashboard/actions/alerts/silence",
                             {"alert": "gpu_temperature", "labels": '{"gpu": "0"}', "seconds": "3600"})
    assert response.status_code == 200 and "Silenced gpu_temperature for 1 h." in response.text
    assert re.search(r'data-testid="alert-quiet">silenced until', response.text)


@pytest.mark.parametrize("seconds, message", [("soon", "seconds must be a number"),
                                              ("0", "seconds must be between"),
                                              ("nan", "seconds must be between"),
                                              ("99999999", "seconds must be between")])
def test_a_bad_silence_period_answers_400_with_a_message(alerting, seconds, message):
    response = alerting.post("/dashboard/actions/alerts/silence",
                             {"alert": "gpu_temperature", "labels": '{"gpu": "0"}', "seconds": seconds})
    assert response.status_code == 400 and message in response.text
    assert 'data-testid="alert-quiet"' not in response.text


@pytest.mark.parametrize("form, message", [({"labels": "{}"}, "alert is required"),
                                           ({"alert": "gpu_temperature", "labels": "[1]"}, "labels must be")])
def test_acknowledge_without_a_target_answers_400_with_a_message(alerting, form, message):
    response = alerting.post("/dashboard/actions/alerts/acknowledge", form)
    assert response.status_code == 400 and message in response.text


# --- models ---------------------------------------------------------------------------------------

def test_unload_answers_the_models_fragment_and_unloads(dash):
    svc(dash.app).engine.load("tiny")
    response = dash.post("/dashboard/actions/models/unload", {"model": "tiny"})
    assert response.status_code == 200 and "Unloaded tiny:latest." in response.text
    assert [m.name for m in svc(dash.app).engine.snapshot().models] == []


def test_set_active_makes_the_model_the_default(dash):
    response = dash.post("/dashboard/actions/models/activate", {"model": "big"})
    assert response.status_code == 200
    assert svc(dash.app).store.active.get() == "big:latest"
    row = re.search(r'<tr data-model="big:latest">.*?</tr>', response.text, re.S).group(0)
    assert "band-good\">active" in row


def test_deleting_a_read_only_directory_model_answers_422_with_the_reason(dash):
    response = dash.post("/dashboard/actions/models/delete", {"model": "tiny"})
    assert response.status_code == 422
    assert "comes from a directory source the service does not own" in response.text
    assert svc(dash.app).store.get("tiny") is not None


@pytest.mark.parametrize("action", ("load", "unload", "activate", "delete", "benchmark"))
def test_an_unknown_model_answers_404_naming_it(dash, action):
    response = dash.post(f"/dashboard/actions/models/{action}", {"model": "ghost"})
    assert response.status_code == 404
    assert "model &#39;ghost&#39; not found" in response.text
