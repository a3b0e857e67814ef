"""The dashboard's pages, polled fragments and exports through the Flask test client, on the fake back-end
with fake NVML (four GPUs) or none (a CPU box)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from ollama_server.dashboard.export import TABLES
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import collect
from ollama_server.services import EXTENSION_KEY
from tests.fakes.nvml import GIB
from tests.fakes.nvml import FakeNvml

PAGES = ("/dashboard/", "/dashboard/gpu", "/dashboard/models", "/dashboard/apis", "/dashboard/config",
         "/dashboard/optimization", "/dashboard/jobs")
# every fragment that polls with the version it shows (requests are pushed, pulls poll only while one runs)
POLLED = ("health", "loaded-models", "alerts", "gpus", "gpu-history", "models", "api-table", "api-charts",
          "config-status", "config-versions", "optimization-score", "jobs", "job-results", "job-shards")
# the tables docs/dashboard.md promises (TABLES fills when create_app registers the dashboard's modules)
EXPORTED = ("requests", "loaded_models", "alerts", "errors", "gpus", "models", "benchmarks", "endpoints",
            "api_errors", "config_versions", "recommendations")


def svc(app):
    return app.extensions[EXTENSION_KEY]


def version_in(html: str) -> str:
    """The version a polled fragment sends back (hx-vals='{"v": "..."}')."""
    match = re.search(r'"v": "([0-9a-f]+)"', html)
    assert match, "the fragment carries no version"
    return match.group(1)


@pytest.fixture
def gpu_box(make_app):
    nvml = FakeNvml("four_detailed")
    app = make_app(nvml=nvml)
    svc(app).monitor.collect_once()
    return app, app.test_client(), nvml


@pytest.fixture
def cpu_box(make_app):
    app = make_app()
    svc(app).monitor.collect_once()
    return app, app.test_client()


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_html_with_four_gpus(gpu_box, path):
    _, client, _ = gpu_box
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "<!doctype html>" in response.text and "X-CSRF-Token" in response.text


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_html_on_a_cpu_box(cpu_box, path):
    _, client = cpu_box
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_before_the_first_collection(make_app, path):
    client = make_app(nvml=FakeNvml("four_detailed")).test_client()
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"


def test_the_gpu_page_says_no_gpu_detected_on_a_cpu_box(cpu_box):
    _, client = cpu_box
    page = client.get("/dashboard/gpu").text
    assert 'data-testid="no-gpu"' in page and "No GPU detected." in page
    assert "data-gpu=" not in page


def test_the_gpu_page_shows_every_gpu_with_its_temperature(gpu_box):
    _, client, _ = gpu_box
    page = client.get("/dashboard/gpu").text
    assert "No GPU detected" not in page
    for index, name in enumerate(("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060", "NVIDIA A2",
                                  "NVIDIA GeForce GTX 1080 Ti")):
        assert f'data-gpu="{index}"' in page and name in page
    assert "83 °C" in page and "band-critical" in page


def test_the_gpu_page_waits_for_the_first_collection_instead_of_failing(make_app):
    page = make_app(nvml=FakeNvml("four_detailed")).test_client().get("/dashboard/gpu").text
    assert "Waiting for the first metrics collection" in page


def test_the_overview_says_no_gpu_on_a_cpu_box(cpu_box):
    _, client = cpu_box
    assert "No GPU detected" in client.get("/dashboard/").text


@pytest.mark.parametrize("name", POLLED)
def test_every_polled_partial_answers_200_then_204_for_the_version_it_would_render(gpu_box, name):
    _, client, _ = gpu_box
    first = client.get(f"/dashboard/partials/{name}")
    assert first.status_code == 200
    again = client.get(f"/dashboard/partials/{name}", query_string={"v": version_in(first.text)})
    assert again.status_code == 204 and again.data == b""


def test_the_gpus_partial_answers_the_new_memory_after_it_changed(gpu_box):
    app, client, nvml = gpu_box
    version = version_in(client.get("/dashboard/partials/gpus").text)
    nvml.set_used(0, 20 * GIB)
    svc(app).monitor.collect_once()
    response = client.get("/dashboard/partials/gpus", query_string={"v": version})
    assert response.status_code == 200
    assert "20.0 GiB / 24.0 GiB" in response.text and version_in(response.text) != version


def test_the_health_partial_answers_the_new_hottest_gpu_after_a_temperature_change(gpu_box):
    app, client, nvml = gpu_box
    version = version_in(client.get("/dashboard/partials/health").text)
    nvml.devices[0]["temp"] = 64
    svc(app).monitor.collect_once()
    response = client.get("/dashboard/partials/health", query_string={"v": version})
    assert response.status_code == 200 and "hottest 72 °C" in response.text


def test_the_loaded_models_partial_lists_a_model_once_it_is_loaded(gpu_box):
    app, client, _ = gpu_box
    before = client.get("/dashboard/partials/loaded-models").text
    assert "No model is loaded" in before
    svc(app).engine.load("tiny")
    response = client.get("/dashboard/partials/loaded-models", query_string={"v": version_in(before)})
    assert response.status_code == 200 and "tiny:latest" in response.text


def test_the_requests_partial_lists_a_running_request(gpu_box, fake_backend):
    app, client, _ = gpu_box
    fake_backend.gate.clear()  # hold decoding: the request stays live while the fragment is read
    fake_backend.enqueue("hello")
    with app.app_context():
        generation = svc(app).engine.submit(GenerateRequest(model="tiny", prompt="x", max_tokens=5))
    try:
        page = client.get("/dashboard/partials/requests").text
        assert f'data-request-id="{generation.id}"' in page
        assert "No request is running" not in page
    finally:
        fake_backend.gate.set()
        collect(generation.model, generation)


def test_the_exported_tables_are_the_documented_ones(gpu_box):
    assert sorted(TABLES) == sorted(EXPORTED)


@pytest.mark.parametrize("table_name", EXPORTED)
def test_every_table_downloads_as_csv_with_a_header_row(gpu_box, table_name):
    _, client, _ = gpu_box
    response = client.get(f"/dashboard/export/{table_name}.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f'filename="{table_name}-' in disposition
    assert disposition.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(response.text)))
    json_rows = client.get(f"/dashboard/export/{table_name}.json").get_json()
    if json_rows:
        assert rows[0] == list(json_rows[0]) and len(rows) == len(json_rows) + 1
    else:
        assert rows in ([], [[]])  # no row: no column is known either


@pytest.mark.parametrize("table_name", EXPORTED)
def test_every_table_downloads_as_a_json_list(gpu_box, table_name):
    _, client, _ = gpu_box
    response = client.get(f"/dashboard/export/{table_name}.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert isinstance(json.loads(response.text), list)


def test_the_gpus_export_has_one_row_per_gpu(gpu_box):
    _, client, _ = gpu_box
    rows = client.get("/dashboard/export/gpus.json").get_json()
    assert [r["name"] for r in rows][0] == "NVIDIA GeForce RTX 3090" and len(rows) == 4
    header = client.get("/dashboard/export/gpus.csv").text.splitlines()[0].split(",")
    assert header[:3] == ["index", "name", "uuid"]


def test_the_models_export_lists_both_models(gpu_box):
    _, client, _ = gpu_box
    assert {r["name"] for r in client.get("/dashboard/export/models.json").get_json()} == {"tiny:latest",
                                                                                           "big:latest"}


@pytest.mark.parametrize("path", ("/dashboard/export/nope.csv", "/dashboard/export/gpus.xml"))
def test_an_unknown_table_or_format_is_a_404_html_page(gpu_box, path):
    _, client, _ = gpu_box
    response = client.get(path)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Error 404" in response.text


def test_the_cost_partial_answers_422_naming_the_field_when_a_value_is_not_a_number(gpu_box):
    _, client, _ = gpu_box
    response = client.get("/dashboard/partials/cost", query_string={"hardware_price": "lots"})
    assert response.status_code == 422
    assert re.search(r'data-error-for="hardware_price">must be a number, got &#39;lots&#39;', response.text)
    assert 'data-testid="cost-result"' not in response.text


def test_the_cost_partial_answers_422_with_the_message_of_an_out_of_range_value(gpu_box):
    _, client, _ = gpu_box
    response = client.get("/dashboard/partials/cost", query_string={"utilization_percent": "250"})
    assert response.status_code == 422
    assert 'data-error-for="utilization_percent"' in response.text


def test_the_cost_partial_answers_the_result_for_good_inputs(gpu_box):
    _, client, _ = gpu_box
    response = client.get("/dashboard/partials/cost", query_string={
        "hardware_price": "2000", "power_watts": "300", "idle_watts": "50", "electricity_price_per_kwh": "0.3",
        "utilization_percent": "50", "tokens_per_second": "40", "api_price_per_million_tokens": "0.6",
        "amortization_months": "36"})
    assert response.status_code == 200
    assert 'data-testid="cost-result"' in response.text and 'data-testid="monthly-cost"' in response.text
    assert "data-error-for" not in response.text
