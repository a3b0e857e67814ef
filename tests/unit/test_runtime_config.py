"""Runtime configuration over HTTP on the fake back-end and fake NVML: validation, presets, versions, rollback,
preview, and the engine reload each applied change starts."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ollama_server.engine import planner
from ollama_server.runtime_config.presets import PRESETS
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import FakeNvml
from tests.fakes.tiny_gguf import write_header_model

CONFIGURE = "/api/dashboard/configure"
CONFIG = "/api/dashboard/config"
SEED_BODY = {"tensor_split": "0.25,0.25,0.25,0.25", "gpu_layers": 999, "context_size": 131072, "batch_size": 512}
GPU_NAMES = ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060", "NVIDIA A2", "NVIDIA GeForce GTX 1080 Ti"]
GUARD_S = 30.0  # failure guard only


@pytest.fixture
def build(make_app, tmp_path):
    """An app over two GGUF headers with real tensor tables, its GPUs from a fake NVML scenario."""
    models = tmp_path / "gguf"
    models.mkdir()
    write_header_model(models / "small.gguf", blocks=4)
    write_header_model(models / "large.gguf", blocks=12, width=64)

    def make(scenario: str | None = "four_detailed", **overrides):
        return make_app(models_dir=[str(models)], nvml=FakeNvml(scenario) if scenario else None, **overrides)
    return make


@pytest.fixture
def app(build):
    return build()


@pytest.fixture
def client(app):
    return app.test_client()


def svc(app):
    return app.extensions[EXTENSION_KEY]


def versions(client) -> list[dict]:
    return client.get(f"{CONFIG}/versions").get_json()["versions"]


# --- validation ---------------------------------------------------------------------------------
def test_the_seed_body_applies_and_every_request_reads_the_new_settings(app, client):
    response = client.post(CONFIGURE, json=SEED_BODY)
    assert response.status_code == 200
    body = response.get_json()
    assert body["config"] == {"tensor_split": [0.25, 0.25, 0.25, 0.25], "gpu_layers": 999, "context_size": 131072,
                              "batch_size": 512, "threads": 0, "parallel_slots": 1, "log_level": "INFO"}
    assert body["applied"]["changes"] == {"tensor_split": {"old": [], "new": [0.25, 0.25, 0.25, 0.25]},
                                          "gpu_layers": {"old": -1, "new": 999},
                                          "context_size": {"old": 256, "new": 131072}}
    assert body["reload"]["generation"] == 1
    settings = svc(app).settings
    assert (settings.default_context_size, settings.gpu_layers, settings.tensor_split) == (131072, 999, (0.25,) * 4)
    assert svc(app).engine.settings is settings
    assert client.get(CONFIG).get_json()["config"] == body["config"]


def test_it_returns_400_naming_each_bad_field_and_changes_nothing(app, client):
    before = svc(app).settings
    response = client.post(CONFIGURE, json={"gpu_layers": -5, "batch_size": "big", "threads": True,
                                            "parallel_slots": 1000, "context_size": 8.5, "colour": "blue"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    fields = error["fields"]
    assert set(fields) == {"gpu_layers", "batch_size", "threads", "parallel_slots", "context_size", "colour"}
    assert "at least -1" in fields["gpu_layers"] and "integer" in fields["batch_size"]
    assert "integer" in fields["threads"] and "at most 256" in fields["parallel_slots"]
    assert "unknown setting" in fields["colour"] and "gpu_layers" in error["message"]
    assert svc(app).settings is before
    assert versions(client) == []  # nothing recorded, not even the baseline


@pytest.mark.parametrize("split, words", [
    ("0.5,0.5", "4 GPUs are present"),
    ([1, 1, 1, 1, 1], "has 5 entries"),
    ("a,b,c,d", "expected a number"),
    ([-1, 1, 1, 1], "must not be negative"),
    ([0, 0, 0, 0], "at least one proportion must be positive"),
    ([True, 1, 1, 1], "list of numbers"),
    ({"gpu0": 1}, "list of numbers"),
])
def test_it_returns_400_naming_tensor_split_when_it_does_not_fit_the_gpus(client, split, words):
    response = client.post(CONFIGURE, json={"tensor_split": split})
    assert response.status_code == 400
    assert words in response.get_json()["error"]["fields"]["tensor_split"]


def test_it_returns_400_naming_tensor_split_when_there_is_no_gpu(build):
    client = build("no_driver").test_client()
    response = client.post(CONFIGURE, json={"tensor_split": [1.0]})
    assert response.status_code == 400
    assert "no GPU detected" in response.get_json()["error"]["fields"]["tensor_split"]
    assert client.post(CONFIGURE, json={"tensor_split": "", "batch_size": 64}).status_code == 200


@pytest.mark.parametrize("body, field", [([1, 2], "body"), ({}, "body"), ({"note": 5, "batch_size": 8}, "note"),
                                         ({"note": "x" * 501, "batch_size": 8}, "note")])
def test_it_returns_400_naming_the_body_or_note_when_they_are_unusable(client, body, field):
    response = client.post(CONFIGURE, json=body)
    assert response.status_code == 400
    assert field in response.get_json()["error"]["fields"]


def test_a_body_that_is_not_json_is_a_400_not_a_500(client):
    response = client.post(CONFIGURE, data="gpu_layers=3", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"] == {"body": "must be a JSON object"}


# --- hot reload through the route ---------------------------------------------------------------
def test_an_applied_change_reloads_the_loaded_model_with_its_context_capped_by_the_trained_one(app, client,
                                                                                             fake_backend):
    engine = svc(app).engine
    engine.load("small")
    old = fake_backend.loaded[-1]
    assert client.post(CONFIGURE, json={"context_size": 131072, "batch_size": 64, "parallel_slots": 2}).status_code \
        == 200
    assert engine.wait_for_reload(GUARD_S)
    new = fake_backend.loaded[-1]
    assert new is not old
    assert (new.options.n_ctx, new.options.n_batch, new.options.n_slots) == (4096, 64, 2)  # trained 4096
    assert client.get(CONFIG).get_json()["reload"] == {"state": "idle", "models": {"small:latest": "ready"},
                                                        "generation": 1}


# --- presets ------------------------------------------------------------------------------------
def test_the_config_lists_each_preset_with_a_description_and_values(client):
    presets = {p["name"]: p for p in client.get(CONFIG).get_json()["presets"]}
    assert set(presets) == {"high_performance", "balanced", "conservative"}
    for name, preset in presets.items():
        assert preset["description"] and preset["split_preset"] in planner.PRESETS
        assert preset["values"] == PRESETS[name].values()
    assert presets["high_performance"]["values"]["parallel_slots"] > presets["conservative"]["values"][
        "parallel_slots"]


def test_a_preset_applies_its_values_and_the_planners_split_for_the_gpus(client):
    body = client.post(CONFIGURE, json={"preset": "balanced"}).get_json()
    config = body["config"]
    assert {k: config[k] for k in PRESETS["balanced"].values()} == PRESETS["balanced"].values()
    split = config["tensor_split"]
    assert len(split) == 4 and sum(split) == pytest.approx(1.0, abs=1e-5)
    assert sum(1 for share in split if share > 0) > 1  # in proportion to free memory: several cards share
    assert body["applied"]["note"] == "preset balanced"
    # priority fills the first GPU first: the small model fits the 3090 alone
    fast = client.post(CONFIGURE, json={"preset": "high_performance"}).get_json()["config"]
    assert fast["tensor_split"] == [1.0, 0.0, 0.0, 0.0] and fast["parallel_slots"] == 8


def test_explicit_keys_win_over_a_preset(client):
    config = client.post(CONFIGURE, json={"preset": "conservative", "batch_size": 128}).get_json()["config"]
    assert config["batch_size"] == 128 and config["parallel_slots"] == 1 and config["context_size"] == 2048


def test_an_unknown_preset_is_a_400_naming_preset(client):
    response = client.post(CONFIGURE, json={"preset": "ludicrous"})
    assert response.status_code == 400
    assert "high_performance" in response.get_json()["error"]["fields"]["preset"]


def test_a_preset_without_gpus_leaves_the_split_to_llama_cpp(build):
    config = build("no_driver").test_client().post(CONFIGURE, json={"preset": "balanced"}).get_json()["config"]
    assert config["tensor_split"] == []


# --- versions and rollback ----------------------------------------------------------------------
def test_every_apply_is_a_version_after_a_baseline_of_the_startup_values(app, client):
    client.post(CONFIGURE, json={"batch_size": 64, "note": "smaller batches"})
    client.post(CONFIGURE, json={"threads": 2})
    newest, first, baseline = versions(client)
    assert baseline["source"] == "startup" and baseline["changes"] == {}
    assert baseline["values"] == {"tensor_split": [], "gpu_layers": -1, "context_size": 256, "batch_size": 512,
                                  "threads": 0, "parallel_slots": 1, "log_level": "INFO"}
    assert first["changes"] == {"batch_size": {"old": 512, "new": 64}} and first["note"] == "smaller batches"
    assert newest["changes"] == {"threads": {"old": 0, "new": 2}} and newest["values"]["batch_size"] == 64
    assert (newest["actor"], newest["source"], newest["rollback_of"]) == ("api", "api", None)
    assert newest["id"] > first["id"] > baseline["id"]
    assert newest["time"].endswith("Z") and newest["at"] >= first["at"]
    # kept in the metrics database file
    with sqlite3.connect(Path(svc(app).settings.data_dir) / "metrics.db") as db:
        assert db.execute("SELECT count(*) FROM config_versions").fetchone()[0] == 3
    assert [v["id"] for v in client.get(f"{CONFIG}/versions?limit=1").get_json()["versions"]] == [newest["id"]]


@pytest.mark.parametrize("limit", ["0", "abc", "100000"])
def test_it_returns_400_naming_limit_when_it_is_out_of_range(client, limit):
    response = client.get(f"{CONFIG}/versions?limit={limit}")
    assert response.status_code == 400 and "limit" in response.get_json()["error"]["fields"]


def test_rollback_reapplies_a_versions_values_as_a_new_version(app, client, fake_backend):
    svc(app).engine.load("small")
    client.post(CONFIGURE, json={"batch_size": 64})
    client.post(CONFIGURE, json={"batch_size": 128, "threads": 4})
    baseline = versions(client)[-1]
    response = client.post(f"{CONFIG}/rollback", json={"version": baseline["id"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["config"] == baseline["values"]
    applied = body["applied"]
    assert (applied["source"], applied["rollback_of"]) == ("rollback", baseline["id"])
    assert applied["changes"] == {"batch_size": {"old": 128, "new": 512}, "threads": {"old": 4, "new": 0}}
    assert versions(client)[0]["id"] == applied["id"]
    assert svc(app).engine.wait_for_reload(GUARD_S)
    assert fake_backend.loaded[-1].options.n_batch == 512


def test_rollback_to_an_unknown_version_is_a_404_naming_version(client):
    response = client.post(f"{CONFIG}/rollback", json={"version": 999})
    assert response.status_code == 404
    assert "999" in response.get_json()["error"]["fields"]["version"]


@pytest.mark.parametrize("body", [{}, {"version": "1"}, {"version": True}, {"version": 0}])
def test_rollback_without_a_version_id_is_a_400_naming_version(client, body):
    response = client.post(f"{CONFIG}/rollback", json=body)
    assert response.status_code == 400 and "version" in response.get_json()["error"]["fields"]


def test_an_unwritable_history_is_a_503_and_nothing_is_applied(build, tmp_path):
    unwritable = tmp_path / "a-directory.db"
    unwritable.mkdir()  # sqlite cannot open a directory as its file
    app = build(metrics_db=str(unwritable))
    before = svc(app).settings
    response = app.test_client().post(CONFIGURE, json={"batch_size": 64})
    assert response.status_code == 503
    assert "nothing was changed" in response.get_json()["error"]["message"]
    assert svc(app).settings is before


# --- preview ------------------------------------------------------------------------------------
def test_preview_shows_the_weight_distribution_under_the_candidate_values_without_applying(app, client):
    before = svc(app).settings
    body = client.post(f"{CONFIG}/preview", json={"tensor_split": [1, 1, 0, 0], "gpu_layers": 999}).get_json()
    assert body["valid"] is True and body["errors"] == {} and body["plan_error"] is None
    plan = body["plan"]
    assert plan["model"] == "small:latest" and plan["layer_count"] == 5
    assert [g["name"] for g in plan["gpus"]] == GPU_NAMES
    assert [g["index"] for g in plan["gpus"]] == [0, 1, 2, 3]
    layers = [g["layers"] for g in plan["gpus"]]
    assert layers[2:] == [0, 0] and sum(layers) == 5 and plan["cpu_layers"] == 0
    assert all(g["bytes"] > 0 and g["gib"] == round(g["bytes"] / planner.GIB, 3) for g in plan["gpus"][:2])
    assert body["changes"]["gpu_layers"] == {"old": -1, "new": 999}
    assert svc(app).settings is before and versions(client) == []


def test_preview_counts_the_layers_left_on_the_cpu(client):
    plan = client.post(f"{CONFIG}/preview", json={"gpu_layers": 2, "model": "large"}).get_json()["plan"]
    assert plan["model"] == "large:latest"
    assert plan["gpu_layers"] == 2 and plan["cpu_layers"] == plan["layer_count"] - 2 == 11


def test_preview_reports_validation_errors_instead_of_a_plan(client):
    body = client.post(f"{CONFIG}/preview", json={"tensor_split": [1], "batch_size": 0}).get_json()
    assert body["valid"] is False and body["plan"] is None
    assert set(body["errors"]) == {"tensor_split", "batch_size"}


def test_preview_of_a_preset_plans_its_split(client):
    body = client.post(f"{CONFIG}/preview", json={"preset": "high_performance"}).get_json()
    assert body["values"]["tensor_split"] == [1.0, 0.0, 0.0, 0.0]
    assert [g["layers"] for g in body["plan"]["gpus"]] == [5, 0, 0, 0]


def test_preview_says_why_a_model_cannot_be_planned(make_app):
    client = make_app(nvml=FakeNvml("four_detailed")).test_client()  # placeholder files: no tensor table
    body = client.post(f"{CONFIG}/preview", json={}).get_json()
    assert body["valid"] is True and body["plan"] is None and "cannot plan model" in body["plan_error"]
