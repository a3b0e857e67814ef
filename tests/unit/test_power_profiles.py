"""Power profiles over the fake pynvml: clamping, persistence, re-apply at start, rollback, and the routes."""
from __future__ import annotations

import json
import logging

import pytest

from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.power import PROFILES
from ollama_server.monitoring.power import PowerProfileError
from ollama_server.monitoring.power import PowerProfiles
from tests.fakes.nvml import FakeNvml
from tests.fakes.nvml import NVMLError_NotSupported


def limits_w(nvml: FakeNvml) -> list[float]:
    return [row["power_limit_mw"] / 1000 for row in nvml.devices]


def profiles(tmp_path, scenario: str = "four_detailed", through_reader: bool = False):
    nvml = FakeNvml(scenario)
    source = GpuReader(nvml=nvml) if through_reader else nvml
    return PowerProfiles(source, tmp_path / "power_profile.json"), nvml


# --- the module ----------------------------------------------------------------------------------
def test_it_offers_the_seeds_three_profiles():
    assert {name: p.to_dict() for name, p in PROFILES.items()} == {
        "quiet": {"power_limit_w": 220, "max_concurrent_jobs": 1, "description": "Low power, quiet operation"},
        "normal": {"power_limit_w": 280, "max_concurrent_jobs": 1, "description": "Balanced performance"},
        "max": {"power_limit_w": 350, "max_concurrent_jobs": 2, "description": "Maximum performance"}}


def test_it_starts_on_normal_with_one_job_at_a_time_when_nothing_was_saved(tmp_path):
    power, nvml = profiles(tmp_path)
    assert power.current == "normal" and power.max_concurrent_jobs == 1
    assert nvml.power_limit_sets == []  # building it touches no GPU


def test_it_clamps_each_gpu_to_its_own_range_and_says_which_were_clamped(tmp_path):
    power, nvml = profiles(tmp_path)  # ranges: 100-365 W, 100-170 W, 35-60 W, 125-300 W
    result = power.apply("max")
    assert result["status"] == "success" and result["profile"] == "max"
    assert result["power_limit_w"] == 350 and result["max_concurrent_jobs"] == 2
    assert [(g["index"], g["power_limit_w"], g["clamped"]) for g in result["gpus"]] == [
        (0, 350.0, False), (1, 170.0, True), (2, 60.0, True), (3, 300.0, True)]
    assert result["gpus"][2]["name"] == "NVIDIA A2"
    assert limits_w(nvml) == [350.0, 170.0, 60.0, 300.0]
    assert nvml.power_limit_sets == [(0, 350_000), (1, 170_000), (2, 60_000), (3, 300_000)]


def test_a_limit_below_a_cards_minimum_is_raised_to_the_minimum(tmp_path):
    nvml = FakeNvml("four_detailed")
    nvml.devices[1]["power_constraints"] = (230_000, 400_000)
    result = PowerProfiles(nvml, tmp_path / "p.json").apply("quiet")
    assert [(g["power_limit_w"], g["clamped"]) for g in result["gpus"]] == [
        (220.0, False), (230.0, True), (60.0, True), (220.0, False)]


def test_the_chosen_profile_is_persisted_and_read_back_by_the_next_start(tmp_path):
    power, _ = profiles(tmp_path)
    power.apply("max")
    assert power.current == "max" and power.max_concurrent_jobs == 2
    assert json.loads((tmp_path / "power_profile.json").read_text())["profile"] == "max"
    again, nvml = profiles(tmp_path)
    assert again.current == "max" and again.max_concurrent_jobs == 2
    assert nvml.power_limit_sets == []  # reading the state sets nothing


def test_apply_saved_sets_the_saved_profile_again_after_a_reboot(tmp_path):
    profiles(tmp_path)[0].apply("quiet")
    power, rebooted = profiles(tmp_path)  # a fresh driver: every card back at its default limit
    assert limits_w(rebooted) == [350.0, 170.0, 60.0, 250.0]
    result = power.apply_saved()
    assert result["profile"] == "quiet"
    assert limits_w(rebooted) == [220.0, 170.0, 60.0, 220.0]


def test_apply_saved_touches_no_gpu_when_no_profile_was_ever_chosen(tmp_path):
    power, nvml = profiles(tmp_path)
    assert power.apply_saved() is None
    assert nvml.power_limit_sets == [] and nvml.init_calls == 0


def test_apply_saved_logs_instead_of_raising_when_the_gpu_refuses(tmp_path, caplog):
    profiles(tmp_path)[0].apply("max")
    power, nvml = profiles(tmp_path)
    nvml.fail_power_limit(0)
    with caplog.at_level(logging.WARNING, logger="ollama_server.monitoring.power"):
        assert power.apply_saved() is None
    assert "power profile max not applied at start" in caplog.text
    assert "needs root" in caplog.text
    assert power.current == "max"  # still what the operator chose; the next start tries again


def test_a_permission_error_on_the_third_gpu_puts_the_first_two_back_and_keeps_the_old_profile(tmp_path):
    power, nvml = profiles(tmp_path)
    before = limits_w(nvml)
    nvml.fail_power_limit(2)
    with pytest.raises(PowerProfileError) as caught:
        power.apply("quiet")
    assert caught.value.status == 403
    assert "GPU 2 (NVIDIA A2)" in caught.value.message and "Insufficient Permissions" in caught.value.message
    assert "run the server as root" in caught.value.message and "nvidia-smi -pm 1" in caught.value.message
    # set 0 and 1, then 2 refused, then 0 and 1 restored to what they were
    assert nvml.power_limit_sets == [(0, 220_000), (1, 170_000), (0, 350_000), (1, 170_000)]
    assert limits_w(nvml) == before
    assert power.current == "normal" and not (tmp_path / "power_profile.json").exists()


def test_a_failure_other_than_permission_is_a_500_in_the_seeds_wording(tmp_path):
    power, nvml = profiles(tmp_path, "two_unequal")
    nvml.fail_power_limit(0, NVMLError_NotSupported)
    with pytest.raises(PowerProfileError) as caught:
        power.apply("max")
    assert caught.value.status == 500
    assert caught.value.message.startswith("Failed to set power profile: cannot set GPU 0")
    assert "Not Supported" in caught.value.message


@pytest.mark.parametrize("through_reader", [False, True])
def test_without_a_driver_it_answers_503_saying_profiles_need_nvml(tmp_path, through_reader):
    power, _ = profiles(tmp_path, "no_driver", through_reader=through_reader)
    with pytest.raises(PowerProfileError) as caught:
        power.apply("quiet")
    assert caught.value.status == 503
    assert caught.value.message.startswith("no NVIDIA GPU available: power profiles need NVML")
    assert "Driver Not Loaded" in caught.value.message
    assert power.current == "normal"


def test_through_a_gpu_reader_it_shares_the_readers_nvml_session(tmp_path):
    power, nvml = profiles(tmp_path, "two_unequal", through_reader=True)
    power.apply("normal")
    power.apply("quiet")
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 0
    assert limits_w(nvml) == [220.0, 220.0]


def test_an_unknown_profile_is_a_400_listing_the_choices(tmp_path):
    power, nvml = profiles(tmp_path)
    with pytest.raises(PowerProfileError) as caught:
        power.apply("turbo")
    assert (caught.value.status, caught.value.message) == (400, "Invalid profile. Choose from: ['quiet', 'normal', 'max']")
    assert nvml.init_calls == 0


@pytest.mark.parametrize("content", ["{not json", '{"profile": "turbo"}', "[1, 2]"])
def test_an_unreadable_state_file_means_normal(tmp_path, content):
    (tmp_path / "power_profile.json").write_text(content)
    power, _ = profiles(tmp_path)
    assert power.current == "normal" and power.apply_saved() is None


# --- the routes -----------------------------------------------------------------------------------
def companion_app(make_app, nvml: FakeNvml):
    app = make_app(nvml=nvml)
    if "companion_power" not in app.blueprints:
        pytest.fail("the companion power blueprint is not registered in ollama_server/api/__init__.py")
    return app


def error_text(response) -> str:
    """The message of a companion error body: FastAPI's {"detail"}, the same text under "error"."""
    body = response.get_json()
    assert set(body) == {"detail", "error"} and body["detail"] == body["error"], body
    return body["detail"]


def test_get_answers_the_seeds_shape_with_max_concurrent_jobs(make_app):
    client = companion_app(make_app, FakeNvml("two_unequal")).test_client()
    response = client.get("/settings/power_profile")
    assert response.status_code == 200
    assert response.get_json() == {
        "current": "normal", "max_concurrent_jobs": 1,
        "profiles": {name: profile.to_dict() for name, profile in PROFILES.items()}}


def test_post_with_the_query_parameter_applies_and_answers_the_seeds_success_shape(make_app):
    nvml = FakeNvml("two_unequal")  # both cards allow 100-300 W
    client = companion_app(make_app, nvml).test_client()
    response = client.post("/settings/power_profile?profile=max")
    assert response.status_code == 200
    body = response.get_json()
    assert {k: body[k] for k in ("status", "profile", "power_limit_w", "max_concurrent_jobs")} == {
        "status": "success", "profile": "max", "power_limit_w": 350, "max_concurrent_jobs": 2}
    assert [(g["power_limit_w"], g["clamped"]) for g in body["gpus"]] == [(300.0, True), (300.0, True)]
    assert client.get("/settings/power_profile").get_json()["current"] == "max"


def test_post_accepts_a_json_body_too(make_app):
    nvml = FakeNvml("two_unequal")
    client = companion_app(make_app, nvml).test_client()
    response = client.post("/settings/power_profile", json={"profile": "quiet"})
    assert response.status_code == 200 and response.get_json()["profile"] == "quiet"
    assert limits_w(nvml) == [220.0, 220.0]


@pytest.mark.parametrize("query, body", [("?profile=turbo", None), ("", {"profile": 3})])
def test_post_answers_400_listing_the_profiles_for_an_unknown_one(make_app, query, body):
    nvml = FakeNvml("two_unequal")
    client = companion_app(make_app, nvml).test_client()
    response = client.post("/settings/power_profile" + query, json=body)
    assert response.status_code == 400
    assert error_text(response) == "Invalid profile. Choose from: ['quiet', 'normal', 'max']"
    assert nvml.power_limit_sets == []


def test_post_without_a_profile_answers_400_naming_the_parameter(make_app):
    client = companion_app(make_app, FakeNvml("two_unequal")).test_client()
    response = client.post("/settings/power_profile")
    assert response.status_code == 400 and "profile is required" in error_text(response)


def test_post_answers_403_with_the_fix_when_the_driver_refuses(make_app):
    nvml = FakeNvml("two_unequal")
    nvml.fail_power_limit(1)
    client = companion_app(make_app, nvml).test_client()
    response = client.post("/settings/power_profile?profile=quiet")
    assert response.status_code == 403
    assert "Insufficient Permissions" in error_text(response) and "nvidia-smi -pm 1" in error_text(response)
    assert limits_w(nvml) == [250.0, 250.0]  # the first card was put back
    assert client.get("/settings/power_profile").get_json()["current"] == "normal"


def test_post_answers_503_without_a_gpu(make_app):
    client = companion_app(make_app, FakeNvml("no_driver")).test_client()
    response = client.post("/settings/power_profile?profile=max")
    assert response.status_code == 503
    assert error_text(response).startswith("no NVIDIA GPU available: power profiles need NVML")
