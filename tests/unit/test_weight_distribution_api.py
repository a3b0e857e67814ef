"""GET/POST/DELETE /api/dashboard/weight-distribution on the fake NVML and small real GGUF headers."""
from __future__ import annotations

import pytest

from ollama_server.services import EXTENSION_KEY
from ollama_server.api.weight_distribution import placements
from ollama_server.engine.planner import NO_GPU_NOTE
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.services import services
from tests.fakes.nvml import FakeNvml
from tests.fakes.tiny_gguf import write_header_model

URL = "/api/dashboard/weight-distribution"


@pytest.fixture
def build(make_app, tmp_path):
    """An app over two GGUF files with real tensor tables, its GPUs from a fake NVML scenario."""
    models = tmp_path / "gguf"
    models.mkdir()
    write_header_model(models / "small.gguf", blocks=4)
    write_header_model(models / "large.gguf", blocks=12, width=64)

    def make(scenario: str = "four_unequal", **overrides):
        return make_app(models_dir=[str(models)], nvml=FakeNvml(scenario) if scenario else None, **overrides)
    return make


@pytest.fixture
def client(build):
    return build().test_client()


def test_get_plans_the_default_model_over_every_gpu(client):
    body = client.get(URL).get_json()
    assert body["model"] == "small:latest"  # the smallest model answers when none is named
    assert len(body["gpus"]) == 4 and body["gpu_status"]["available"] is True
    plan = body["plan"]
    assert plan["preset"] == "balanced"
    assert plan["fits"] is True
    assert plan["gpu_layers"] == plan["layer_count"] == 5  # 4 blocks + the output layer
    assert sum(plan["layers_per_gpu"]) == plan["gpu_layers"]
    assert sum(plan["tensor_split"]) == pytest.approx(1.0, abs=1e-5)
    assert body["layers"]["blocks"] == 4 and body["layers"]["kv_bytes_per_layer"] > 0
    assert body["settings"] == {"tensor_split": [], "gpu_layers": -1, "split_mode": "layer", "main_gpu": 0}
    assert body["applied"] is None and body["loaded"] is False


def test_get_uses_the_configured_context_and_slots(build):
    body = build(parallel_slots=3, default_context_size=512).test_client().get(URL).get_json()
    assert body["context_length"] == 512 and body["parallel_slots"] == 3
    # llama arch, 4 heads of 8, 2 KV heads: (8 + 8) * 2 * 2 bytes * 512 * 3
    assert body["layers"]["kv_bytes_per_layer"] == 16 * 2 * 2 * 512 * 3


@pytest.mark.parametrize("preset", ["balanced", "equal", "priority"])
def test_get_plans_a_named_model_with_each_preset(client, preset):
    body = client.get(f"{URL}?model=large&preset={preset}").get_json()
    assert body["model"] == "large:latest"
    assert body["plan"]["preset"] == preset
    assert body["plan"]["gpu_layers"] == 13


def test_priority_puts_a_small_model_on_gpu_0(client):
    assert client.get(f"{URL}?preset=priority").get_json()["plan"]["layers_per_gpu"] == [5, 0, 0, 0]


def test_get_refuses_an_unknown_preset(client):
    response = client.get(f"{URL}?preset=fastest")
    assert response.status_code == 400
    assert "unknown preset" in response.get_json()["error"]


def test_get_answers_404_for_an_unknown_model(client):
    response = client.get(f"{URL}?model=nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "model 'nope' not found"}


@pytest.mark.parametrize("query", ["reserve_mib=lots", "reserve_mib=-5", "reserve_mib=nan", "gpu_layers=-2",
                                   "gpu_layers=1.5"])
def test_get_refuses_bad_numbers(client, query):
    assert client.get(f"{URL}?{query}").status_code == 400


def test_a_reserve_larger_than_every_gpu_leaves_the_model_on_the_cpu(client):
    plan = client.get(f"{URL}?reserve_mib=100000").get_json()["plan"]
    assert plan["gpu_layers"] == 0 and plan["fits"] is False and plan["tensor_split"] == []


def test_get_without_a_gpu_runs_the_model_on_the_cpu(build):
    body = build("no_driver").test_client().get(URL).get_json()
    assert body["gpus"] == []
    assert body["gpu_status"]["available"] is False and "Driver Not Loaded" in body["gpu_status"]["reason"]
    assert body["plan"]["gpu_layers"] == 0
    assert NO_GPU_NOTE in body["plan"]["notes"]


def test_get_builds_the_real_reader_when_none_was_injected(build):
    app = build(scenario="")
    response = app.test_client().get(URL)
    assert response.status_code == 200
    assert isinstance(app.extensions[EXTENSION_KEY].gpu, GpuReader)


def test_a_lost_gpu_gets_no_layers_and_a_note(build):
    body = build("lost_gpu").test_client().get(URL).get_json()
    assert body["gpus"][1]["lost"] is True
    assert body["plan"]["layers_per_gpu"][1] == 0
    assert any(note.startswith("GPU 1 is lost") for note in body["plan"]["notes"])


def test_get_cannot_plan_a_file_without_a_tensor_table(make_app):
    app = make_app(nvml=FakeNvml("two_unequal"))  # the fixture's placeholder files are not GGUF
    response = app.test_client().get(f"{URL}?model=tiny")
    assert response.status_code == 422
    assert "cannot plan model 'tiny:latest'" in response.get_json()["error"]


def test_post_applies_a_preset_for_the_next_load_and_get_shows_it(build):
    app = build()
    client = app.test_client()
    response = client.post(URL, json={"model": "large", "preset": "equal"})
    body = response.get_json()
    assert response.status_code == 200
    assert body["applies_on_next_load"] is True and body["loaded"] is False
    assert body["applied"]["preset"] == "equal"
    assert body["applied"]["tensor_split"] == body["plan"]["tensor_split"]
    assert body["applied"]["gpu_layers"] == body["plan"]["gpu_layers"] == 13
    with app.app_context():
        stored = placements().get("large:latest")
    assert stored.tensor_split == tuple(body["plan"]["tensor_split"]) and stored.gpu_layers == 13
    assert client.get(f"{URL}?model=large").get_json()["applied"]["preset"] == "equal"


def test_post_with_an_empty_body_applies_balanced_to_the_default_model(client):
    body = client.post(URL).get_json()
    assert body["model"] == "small:latest" and body["applied"]["preset"] == "balanced"


def test_post_stores_an_explicit_split_verbatim(client):
    body = client.post(URL, json={"tensor_split": [3, 2, 1, 0], "gpu_layers": 4}).get_json()
    assert body["applied"]["tensor_split"] == [3.0, 2.0, 1.0, 0.0]
    assert body["applied"]["gpu_layers"] == 4
    assert body["plan"]["preset"] == "custom"
    # llama.cpp cuts at 3/6, 5/6, 6/6: slots at 0, 1/4, 2/4, 3/4 land on GPUs 0, 0, 1, 1
    assert body["plan"]["layers_per_gpu"] == [2, 2, 0, 0]
    assert body["plan"]["cpu_layers"] == 1


def test_post_says_when_the_model_is_already_loaded(build):
    app = build()
    with app.app_context():
        services().engine.load("small")
    body = app.test_client().post(URL, json={"model": "small"}).get_json()
    assert body["loaded"] is True
    assert "unload it or wait for keep_alive" in body["message"]
    assert body["applies_on_next_load"] is True


@pytest.mark.parametrize("payload,message", [
    ({"tensor_split": "1,1,1,1"}, "must be a list"),
    ({"tensor_split": {"0": 1}}, "must be a list"),
    ({"tensor_split": [1, -1, 1, 1]}, "must not be negative"),
    ({"tensor_split": [1, "a", 1, 1]}, "must be a number"),
    ({"tensor_split": [1, True, 1, 1]}, "must be a number"),
    ({"tensor_split": [1, 1]}, "2 entries but 4 GPUs"),
    ({"tensor_split": [0, 0, 0, 0]}, "must be positive"),
    ({"tensor_split": [1, 1, 1, 1], "preset": "equal"}, "either preset or tensor_split"),
    ({"preset": "fastest"}, "unknown preset"),
    ({"preset": 3}, "unknown preset"),
    ({"gpu_layers": -2}, "at least -1"),
    ({"gpu_layers": "all"}, "must be a number"),
    ({"model": 5}, "model must be a string"),
    ({"reserve_mib": -1}, "must not be negative"),
])
def test_post_refuses_bad_input(client, payload, message):
    response = client.post(URL, json=payload)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


@pytest.mark.parametrize("raw", ['{"tensor_split": [NaN, 1, 1, 1]}', '{"tensor_split": [Infinity, 1, 1, 1]}',
                                 "[1, 2]", "{not json"])
def test_post_refuses_non_finite_numbers_and_non_objects(client, raw):
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_post_refuses_a_split_without_gpus(build):
    response = build("no_driver").test_client().post(URL, json={"tensor_split": [1]})
    assert response.status_code == 400
    assert "no GPU detected" in response.get_json()["error"]


def test_post_answers_404_for_an_unknown_model(client):
    assert client.post(URL, json={"model": "nope"}).status_code == 404


def test_nothing_is_stored_when_the_input_is_refused(build):
    app = build()
    app.test_client().post(URL, json={"model": "small", "tensor_split": [1]})
    with app.app_context():
        assert placements().get("small:latest") is None


def test_delete_forgets_an_applied_plan(client):
    client.post(URL, json={"model": "small", "preset": "priority"})
    assert client.delete(f"{URL}?model=small").get_json() == {"model": "small:latest", "cleared": True}
    assert client.get(f"{URL}?model=small").get_json()["applied"] is None
    assert client.delete(f"{URL}?model=small").get_json()["cleared"] is False


def test_the_routes_need_the_api_key_when_one_is_set(build):
    client = build(api_key="secret").test_client()
    assert client.get(URL).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer secret"}).status_code == 200


def test_the_next_load_uses_the_applied_plan(build, fake_backend):
    app = build()
    with app.app_context():
        engine = services().engine
    body = app.test_client().post(URL, json={"model": "large", "tensor_split": [1, 1, 0, 2], "gpu_layers": 9})
    assert body.status_code == 200
    with app.app_context():
        engine.load("large")
    options = fake_backend.loaded[-1].options
    assert options.tensor_split == (1.0, 1.0, 0.0, 2.0)
    assert options.n_gpu_layers == 9
