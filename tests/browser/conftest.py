"""Browser fixtures: the real server on four fake GPUs, Debian's Chromium through Playwright, recorded pages."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from typing import Iterator

import pytest
import requests

from tests.browser.support import CHROMIUM
from tests.browser.support import CHROMIUM_ARGS
from tests.browser.support import VIEWPORT
from tests.browser.support import PageProblems
from tests.browser.support import browser_unavailable_reason
from tests.browser.support import wait_until
from tests.conftest import LiveServer

HERE = Path(__file__).resolve().parent
FAKE_GPU_COUNT = 4  # FakeNvml("four_detailed"), installed by tests.fakes.fake_gpu_launcher

# Playwright must never fetch a browser of its own: only PyPI, Debian and npm are reachable here.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must already be there
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser `browser`, and skip them all when Chromium or Playwright is missing."""
    reason = browser_unavailable_reason()
    for item in items:
        if HERE not in Path(item.path).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"browser tests: {reason}"))


def _json(url: str) -> Any:
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


# "package" scope: one server and one browser for every test under tests/browser (subpackages included),
# stopped when those end. A live sync Playwright marks the main thread's asyncio loop as running, which
# would break asyncio.run() in every later test; the server's model would hold memory through them too.
@pytest.fixture(scope="package")
def fake_gpu_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The real server (bundled model) whose NVML is four fake GPUs; ready with its default model loaded."""
    workdir = tmp_path_factory.mktemp("fake_gpu_server")
    # Polls every second (the pages' fragments), pulls from the tests' loopback file server allowed.
    settings = {"metrics_interval": 1, "default_context_size": 1024, "parallel_slots": 2, "log_level": "INFO",
                "dashboard_refresh_seconds": 1, "allow_private_pull_urls": "true"}
    with LiveServer(workdir, settings, module="tests.fakes.fake_gpu_launcher") as server:
        wait_until(lambda: (_json(server.url + "/api/ps") or {}).get("models"), timeout=180,
                   message=f"the default model loaded (GET /api/ps); see {server.log.name}")
        # The first collection runs one metrics_interval after start: until then the GPU list is empty.
        gpus = wait_until(lambda: (_json(server.url + "/api/metrics/gpu") or {}).get("gpu_count"), timeout=60,
                          message=f"the fake GPUs in GET /api/metrics/gpu; see {server.log.name}")
        assert gpus == FAKE_GPU_COUNT, f"expected {FAKE_GPU_COUNT} fake GPUs, the server reports {gpus}"
        yield server


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(f"browser tests: {reason}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        # An explicit executable: Playwright accepts a Chromium older or newer than the one it was built for.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A fresh 1280x900 page; teardown fails on console errors, page errors, failed requests or HTTP >= 400.

    On the page: `page.problems` (a PageProblems), `page.expect_errors()` (errors are the point of this test),
    `page.allow_http_error(url_part, status=None)`, and `page.weight_bytes` (encoded bytes received so far)."""
    context = browser.new_context(viewport=VIEWPORT)
    new_page = context.new_page()
    problems = PageProblems()
    new_page.problems = problems
    new_page.expect_errors = problems.expect_errors
    new_page.allow_http_error = problems.allow_http_error
    new_page.weight_bytes = 0
    new_page.on("console", problems.on_console)
    new_page.on("pageerror", problems.on_page_error)
    new_page.on("requestfailed", problems.on_request_failed)
    new_page.on("response", problems.on_response)

    # Bytes as they crossed the wire (compressed, headers included), from the DevTools protocol.
    cdp = context.new_cdp_session(new_page)

    def finished(event: dict) -> None:
        new_page.weight_bytes += int(event.get("encodedDataLength") or 0)
    cdp.on("Network.loadingFinished", finished)
    cdp.send("Network.enable")
    try:
        yield new_page
    finally:
        context.close()
    found = problems.all()
    if found and not problems.expecting_errors:
        pytest.fail("the page reported problems:\n  " + "\n  ".join(found), pytrace=False)
