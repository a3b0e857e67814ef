"""The browser chain works: Debian's Chromium through Playwright, the real server on fake GPUs, the recorders."""
from __future__ import annotations

import json
import struct

import pytest

from tests.browser.support import ROOT
from tests.browser.support import screenshot
from tests.browser.support import wait_until

HTMX = ROOT / "node_modules" / "htmx.org" / "dist" / "htmx.min.js"
HTMX_WS = ROOT / "node_modules" / "htmx-ext-ws" / "dist" / "ws.min.js"


def shown_json(page) -> dict:
    """The JSON document Chromium renders for an application/json response."""
    return json.loads(page.locator("pre").first.inner_text())


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def test_chromium_shows_the_real_servers_health_with_no_console_error(page, fake_gpu_server):
    response = page.goto(fake_gpu_server.url + "/health")
    assert response.status == 200
    health = shown_json(page)
    assert health["status"] == "ok"
    assert health["components"]["models"]["loaded"] == ["gemma3:270m"]
    assert page.problems.all() == []


def test_chromium_shows_the_four_fake_gpus_of_api_metrics_gpu(page, fake_gpu_server):
    response = page.goto(fake_gpu_server.url + "/api/metrics/gpu")
    assert response.status == 200
    document = shown_json(page)
    assert document["gpu_count"] == 4
    assert [g["name"] for g in document["gpus"]] == ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060",
                                                     "NVIDIA A2", "NVIDIA GeForce GTX 1080 Ti"]
    # The passively cooled A2 has no fan (NVML: NotSupported), so its entry leaves the field out.
    assert ["fan_speed" in g for g in document["gpus"]] == [True, True, False, True]
    assert document["driver_version"] == "550.54.15"
    assert page.problems.all() == []


def test_page_weight_counts_the_bytes_of_the_loaded_document(page, fake_gpu_server):
    page.goto(fake_gpu_server.url + "/api/metrics/gpu")
    body = page.locator("pre").first.inner_text().encode()
    # loadingFinished may trail the load event: wait for it, then compare with the body (headers come on top).
    wait_until(lambda: page.weight_bytes >= len(body), timeout=30, message="the document's bytes counted")
    assert page.weight_bytes < len(body) + 4096


def test_the_page_fixture_records_a_console_error(page):
    page.expect_errors()
    with page.expect_console_message(lambda m: m.type == "error"):
        page.goto("data:text/html,<p>hi</p><script>console.error('deliberate failure')</script>")
    assert page.problems.console_errors == ["deliberate failure"]
    assert page.problems.all() == ["console error: deliberate failure"]


def test_the_page_fixture_records_an_uncaught_exception(page):
    page.expect_errors()
    with page.expect_event("pageerror"):
        page.goto("data:text/html,<script>throw new Error('deliberate throw')</script>")
    assert len(page.problems.page_errors) == 1
    assert "deliberate throw" in page.problems.page_errors[0]


def test_the_page_fixture_records_an_undeclared_404(page, fake_gpu_server):
    page.expect_errors()
    response = page.goto(fake_gpu_server.url + "/no-such-page")
    assert response.status == 404
    assert page.problems.http_errors == [f"GET {fake_gpu_server.url}/no-such-page: 404"]


def test_the_page_fixture_accepts_a_declared_404(page, fake_gpu_server):
    page.allow_http_error("/no-such-page", 404)
    response = page.goto(fake_gpu_server.url + "/no-such-page")
    assert response.status == 404
    # Chromium's own "Failed to load resource" console line for it is part of the declared error too.
    with page.expect_console_message(lambda m: "Failed to load resource" in m.text):
        page.evaluate("() => fetch('/no-such-page')")
    assert page.problems.all() == []


def test_screenshot_saves_a_full_page_png_at_the_desktop_width(page, tmp_path):
    page.set_content("<body style='margin:0'><div style='height:2000px;background:#369'>tall</div></body>")
    path = screenshot(page, "smoke", directory=tmp_path)
    assert path == tmp_path / "smoke.png"
    width, height = png_size(path.read_bytes())
    assert (width, height) == (1280, 2000)  # the whole page, not the 900-pixel viewport


def test_screenshot_refuses_a_name_that_is_a_path(page, tmp_path):
    with pytest.raises(ValueError, match="letters, digits"):
        screenshot(page, "../escape", directory=tmp_path)


def test_the_npm_pinned_htmx_and_its_ws_extension_run_in_chromium(page):
    missing = [str(p.relative_to(ROOT)) for p in (HTMX, HTMX_WS) if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: run `make js-deps`")
    page.set_content("<body hx-ext='ws'><p>htmx</p></body>")
    page.add_script_tag(path=str(HTMX))
    page.add_script_tag(path=str(HTMX_WS))
    assert page.evaluate("() => htmx.version") == "2.0.10"
    # The extension registers itself by name; htmx then knows how to open its sockets.
    assert page.evaluate("() => typeof htmx.createWebSocket") == "function"
    assert page.problems.all() == []


def test_wait_until_returns_the_first_truthy_value():
    answers = iter([0, None, "", "ready"])
    assert wait_until(lambda: next(answers), timeout=60, interval=0) == "ready"


def test_wait_until_names_the_condition_it_gave_up_on():
    with pytest.raises(AssertionError, match="condition not met within 0s: the moon is blue"):
        wait_until(lambda: False, timeout=0, message="the moon is blue")
