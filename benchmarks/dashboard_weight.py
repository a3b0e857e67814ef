#!/usr/bin/env python3
"""Bytes a browser transfers on the first load of each dashboard page (empty cache), in Debian's Chromium.

    python benchmarks/dashboard_weight.py [--json .bench/dashboard_weight.json]

Starts the real server on the bundled model with four fake GPUs (tests/fakes/fake_gpu_launcher.py), opens
every page in a fresh browser context and sums the DevTools protocol's `encodedDataLength` (bytes on the
wire: compressed bodies and headers), split into the document, our own static files, the vendored scripts
and the fragments fetched by htmx during the load. Then reloads each page in the same context (warm cache).
Measured, not asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.support import CHROMIUM  # noqa: E402
from tests.browser.support import CHROMIUM_ARGS  # noqa: E402
from tests.browser.support import browser_unavailable_reason  # noqa: E402
from tests.browser.support import wait_until  # noqa: E402
from tests.conftest import LiveServer  # noqa: E402

PAGES = ("/dashboard/", "/dashboard/gpu", "/dashboard/models", "/dashboard/apis", "/dashboard/config",
         "/dashboard/optimization")


def kind_of(url: str) -> str:
    if "/dashboard/assets/" in url:
        return "vendored"
    if "/static/" in url:
        return "static"
    if "/dashboard/partials/" in url or "/ws/" in url:
        return "fragments"
    return "document"


def measure(context, url: str) -> dict[str, int]:
    """Bytes by kind for one load of `url` in `context`, once the page is loaded and its charts drawn."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    urls: dict[str, str] = {}
    totals = {"document": 0, "static": 0, "vendored": 0, "fragments": 0}
    cdp.on("Network.requestWillBeSent", lambda e: urls.__setitem__(e["requestId"], e["request"]["url"]))
    cdp.on("Network.loadingFinished", lambda e: totals.__setitem__(
        kind_of(urls.get(e["requestId"], "")), totals[kind_of(urls.get(e["requestId"], ""))]
        + int(e.get("encodedDataLength") or 0)))
    cdp.send("Network.enable")
    page.goto(url)
    page.wait_for_load_state("load")
    wait_until(lambda: page.evaluate("[...document.querySelectorAll('[data-figure]')]"
                                     ".every(c => c.getAttribute('data-drawn') === 'true')"), timeout=60)
    page.close()
    return {**totals, "total": sum(totals.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(ROOT / ".bench" / "dashboard_weight.json"))
    args = parser.parse_args()
    reason = browser_unavailable_reason()
    if reason:
        print(f"cannot measure: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright
    results = []
    with tempfile.TemporaryDirectory() as tmp, \
            LiveServer(Path(tmp), {"metrics_interval": 1, "default_context_size": 1024},
                       module="tests.fakes.fake_gpu_launcher") as server, sync_playwright() as playwright:
        wait_until(lambda: (server.get_json("/api/metrics/gpu") or {}).get("gpu_count"), timeout=120)
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        for path in PAGES:
            context = browser.new_context()
            cold = measure(context, server.url + path)
            warm = measure(context, server.url + path)
            context.close()
            results.append({"page": path, "first_load": cold, "warm_reload_total": warm["total"]})
        browser.close()
    print("| page | first load | document | static | vendored JS | fragments | reload (warm cache) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["first_load"]
        print(f"| `{r['page']}` | {c['total']:,} | {c['document']:,} | {c['static']:,} | {c['vendored']:,} | "
              f"{c['fragments']:,} | {r['warm_reload_total']:,} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
