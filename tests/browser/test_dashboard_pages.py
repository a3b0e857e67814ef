"""Each dashboard page in a real Chromium, on the real server with four fake GPUs: it loads with no console
error and no failed request, its charts are drawn with data, and a screenshot goes to docs/screenshots/."""
from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.browser.support import screenshot
from tests.browser.support import wait_until

PAGES = (("overview", "/dashboard/"), ("gpu", "/dashboard/gpu"), ("models", "/dashboard/models"),
         ("apis", "/dashboard/apis"), ("config", "/dashboard/config"), ("optimization", "/dashboard/optimization"),
         ("jobs", "/dashboard/jobs"))
CHART_PAGES = {"gpu", "apis"}
MODEL = "gemma3:270m"


@pytest.fixture(scope="module")
def served(fake_gpu_server):
    """The server after a few real requests through the official client, once the collector has seen them."""
    client = openai.OpenAI(base_url=fake_gpu_server.url + "/v1", api_key="unused")
    for question in ("Say hello.", "Name a colour."):
        client.chat.completions.create(model=MODEL, max_tokens=8,
                                       messages=[{"role": "user", "content": question}])
    client.completions.create(model=MODEL, prompt="The sky is", max_tokens=8)

    def seen():
        apis = fake_gpu_server.get_json("/api/metrics/apis")
        return apis and sum(e["total_requests"] for e in apis["endpoints"]) >= 3
    wait_until(seen, timeout=60, message="the requests in /api/metrics/apis")
    # A benchmark result for the models page and the cost calculator's measured tokens/s.
    bench = f"/api/dashboard/models/{MODEL}/benchmarks"
    if not (fake_gpu_server.get_json(bench) or {}).get("latest"):
        assert requests.post(f"{fake_gpu_server.url}/api/dashboard/models/{MODEL}/benchmark", timeout=30).status_code == 202
        wait_until(lambda: (fake_gpu_server.get_json(bench) or {}).get("latest"), timeout=180,
                   message="the benchmark finished")
    return fake_gpu_server


def drawn_traces(page) -> list[int]:
    """Per chart on the page: how many data points its first trace drew (0 when it drew none)."""
    return page.eval_on_selector_all("[data-figure]", """charts => charts.map(c =>
        c.getAttribute('data-drawn') === 'true' && c.data ? Math.max(0, ...c.data.map(t => (t.x || []).length)) : -1)""")


@pytest.mark.parametrize("name,path", PAGES, ids=[name for name, _ in PAGES])
def test_the_page_loads_cleanly_and_draws_its_charts(served, page, name, path):
    page.goto(served.url + path)
    page.wait_for_load_state("load")
    wait_until(lambda: page.evaluate("typeof htmx !== 'undefined'"), message="htmx loaded")
    assert page.locator("nav a[aria-current=page]").count() == 1
    assert page.locator("#status-badge").inner_text().startswith("Health")
    if name in CHART_PAGES:
        counts = wait_until(lambda: (lambda c: c if c and min(c) > 0 else None)(drawn_traces(page)), timeout=60,
                            message="every chart drawn with data")
        assert len(counts) >= 4
    screenshot(page, name)
    print(f"page weight {name}: {page.weight_bytes} bytes")


def test_the_gpu_page_shows_each_fake_gpu_with_its_thermal_band(served, page):
    page.goto(served.url + "/dashboard/gpu")
    cards = page.locator("[data-gpu]")
    assert cards.count() == 4
    temperatures = [cards.nth(i).locator("[data-testid=temperature]").inner_text() for i in range(4)]
    assert temperatures[0].startswith("83") and "critical" in temperatures[0]   # RTX 3090 at 83 °C
    assert temperatures[1].startswith("47") and "good" in temperatures[1]
    assert "warning" in temperatures[2]                                          # A2 at 72 °C
    assert "not reported" in cards.nth(2).inner_text()                           # the A2 has no fan


def test_the_models_page_lists_the_bundled_model_as_loaded(served, page):
    page.goto(served.url + "/dashboard/models")
    row = page.locator("tr[data-model='gemma3:270m']")
    assert "loaded" in row.locator("[data-testid=model-state]").inner_text()
    assert "32768" in row.inner_text()  # the true (trained) context from the GGUF header


def test_an_export_link_downloads_the_table_as_csv_and_json(served, page):
    page.goto(served.url + "/dashboard/gpu")
    with page.expect_download() as download_info:
        page.locator("#gpus a", has_text="CSV").click()
    text = open(download_info.value.path()).read()
    assert text.splitlines()[0].startswith("index,name,uuid")
    assert len(text.splitlines()) == 5
    rows = json.loads(served.get_text("/dashboard/export/gpus.json"))
    assert [row["index"] for row in rows] == [0, 1, 2, 3]


@pytest.mark.parametrize("name,path", PAGES, ids=[name for name, _ in PAGES])
def test_the_page_fits_a_phone_screen(served, page, name, path):
    """390 px wide: nothing but a table's own scroll box may be wider than the screen."""
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(served.url + path)
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
    assert page.locator("nav a").count() == 7
    if name == "overview":
        screenshot(page, "overview-phone")
