#!/usr/bin/env python3
"""Server-side render time of every dashboard page and partial with a day of samples in the metrics store.

    python benchmarks/dashboard_render.py [--hours 24] [--interval 5] [--runs 30] [--rollup-days 0]
                                          [--json .bench/dashboard_render.json] [--profile PATH]

Builds the app on a temporary data dir with the scripted fake back-end and four fake GPUs
(FakeNvml("four_detailed")), serves a few real requests through four dialects so the collector's
window has api/endpoint/model label sets, then fills `--hours` of what the collector writes every
`--interval` seconds (its own samples, values moving, synthetic timestamps ending now, one insert
per 5 minutes of collections) and runs the store's maintain() so the roll-ups exist. `--rollup-days`
copies that day's roll-ups back that many days (the steady state the 7 d charts read). Then times
each route of docs/dashboard.md with the Flask test client: one warm-up, `--runs` timed GETs, p50/p95/
max ms and the body size; and the unchanged poll (`?v=<its version>`, answered 204). `--profile PATH`
prints cProfile's top functions for that route instead. Measured, not asserted.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402

from ollama_server import create_app  # noqa: E402
from ollama_server.dashboard.fragments import version_of  # noqa: E402
from ollama_server.dashboard.models import pulls_data  # noqa: E402
from ollama_server.dashboard.optimization import cost_data  # noqa: E402
from ollama_server.dashboard.overview import active_requests  # noqa: E402
from ollama_server.services import EXTENSION_KEY  # noqa: E402
from ollama_server.settings import build_settings  # noqa: E402
from ollama_server.storage.metrics import MetricsStore  # noqa: E402
from ollama_server.storage.metrics import Sample  # noqa: E402
from tests.fakes.backend import FakeBackend  # noqa: E402
from tests.fakes.nvml import FakeNvml  # noqa: E402

PAGES = ("/dashboard/", "/dashboard/gpu", "/dashboard/models", "/dashboard/apis", "/dashboard/config",
         "/dashboard/optimization")
CHART_PARTIALS = ("/dashboard/partials/gpu-history", "/dashboard/partials/api-charts")
PARTIALS = ("/dashboard/partials/health", "/dashboard/partials/loaded-models", "/dashboard/partials/alerts",
            "/dashboard/partials/requests", "/dashboard/partials/gpus", "/dashboard/partials/models",
            "/dashboard/partials/pulls", "/dashboard/partials/api-table", "/dashboard/partials/config-status",
            "/dashboard/partials/config-versions", "/dashboard/partials/optimization-score",
            "/dashboard/partials/cost")
ROUTES = PAGES + PARTIALS + tuple(f"{p}{q}" for p in CHART_PARTIALS for q in ("", "?range=24h", "?range=7d"))
# The fragments that carry no version in their HTML (pushed over the websocket, re-rendered by the form,
# polled only while a pull runs): their version comes from the same data the route renders.
UNVERSIONED: dict[str, Callable[[], dict[str, Any]]] = {
    "/dashboard/partials/requests": lambda: {"requests": active_requests()},
    "/dashboard/partials/cost": lambda: cost_data({}),
    "/dashboard/partials/pulls": pulls_data,
}
VERSION = re.compile(r"""hx-vals='\{"v": "([0-9a-f]+)"\}'""")
# (dialect path, body, model): enough traffic that the window holds one label set per endpoint and model.
TRAFFIC = (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Capital of France?"}],
                                     "max_tokens": 16}, "tiny"),
           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "And Italy?"}], "max_tokens": 16},
            "big"),
           ("/v1/completions", {"prompt": "The capital of Spain is", "max_tokens": 16}, "tiny"),
           ("/api/generate", {"prompt": "Why is the sky blue?", "stream": False}, "big"),
           ("/api/chat", {"messages": [{"role": "user", "content": "Hello"}], "stream": False}, "tiny"),
           ("/generate", {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 16}}, None))


def build(home: Path) -> tuple[Flask, FakeBackend]:
    """The app as tests/conftest.py's make_app builds it, with four detailed fake GPUs."""
    models = home / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(b"x" * 10)
    (models / "big.gguf").write_bytes(b"x" * 100)
    settings = build_settings({"models_dir": [str(models)], "data_dir": str(home / "data"),
                               "default_context_size": 256, "parallel_slots": 1})
    backend = FakeBackend()
    app = create_app({"SETTINGS": settings, "BACKEND": backend, "NVML": FakeNvml("four_detailed")})
    return app, backend


def serve_traffic(client: FlaskClient, backend: FakeBackend) -> None:
    """Real requests through the dialects, so the window aggregates (and their label sets) exist."""
    for path, body, model in TRAFFIC * 3:
        backend.enqueue("Paris, of course.")
        payload = {**body, **({"model": model} if model else {})}
        response = client.post(path, json=payload)
        assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[:200])


def moving(value: float, ts: float, phase: int) -> float:
    """A plausible reading at `ts`: the collected value swinging ±15 % over ten minutes, per series."""
    return value * (1.0 + 0.15 * math.sin(ts / 600.0 + phase))


def fill(store: MetricsStore, template: list[tuple[str, dict, float]], now: float, hours: float,
         interval: float) -> int:
    """Store `hours` of collections ending before `now`, one insert per 5 minutes' worth; the collections filled."""
    steps = int(hours * 3600 / interval)
    per_batch = max(1, int(300 / interval))
    for first in range(0, steps, per_batch):
        batch = []
        for step in range(first, min(steps, first + per_batch)):
            ts = now - (steps - step) * interval
            batch += [Sample(name, labels, moving(value, ts, i), ts) for i, (name, labels, value) in enumerate(template)]
        result = store.insert(batch)
        assert result.ok, result
    return steps


def copy_rollups_back(store: MetricsStore, since: float, days: int) -> None:
    """The day's roll-ups copied `days` days back: the steady state of long charts without simulating it."""
    with store.db.atomic():
        for day in range(1, days + 1):
            store.db.execute("INSERT OR IGNORE INTO rollups SELECT minute - ?, metric, labels, count, sum, min, max,"
                             " last FROM rollups WHERE minute >= ?", [day * 86400.0, since])


def version_for(app: Flask, route: str, body: str) -> str | None:
    """The version the page would send back for this fragment (None: a page, nothing to poll)."""
    found = VERSION.search(body)
    if "/partials/" not in route:
        return None
    if route.split("?")[0] in UNVERSIONED:
        with app.test_request_context(route):
            return version_of(UNVERSIONED[route.split("?")[0]]())
    assert found, f"{route}: no version in the fragment"
    return found.group(1)


def percentile(ms: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(ms)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(client: FlaskClient, path: str, runs: int) -> tuple[list[float], list[int], int]:
    """Milliseconds of `runs` GETs after one warm-up, their status codes, and the last body's size."""
    client.get(path)
    ms, statuses, size = [], [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        ms.append((time.perf_counter() - started) * 1000)
        statuses.append(response.status_code)
        size = len(response.get_data())
    return ms, statuses, size


def measure(app: Flask, client: FlaskClient, route: str, runs: int) -> dict[str, Any]:
    """One route: the full render, then the unchanged poll with the version it just rendered."""
    ms, statuses, size = timed(client, route, runs)
    assert set(statuses) == {200}, (route, statuses)
    row: dict[str, Any] = {"route": route, "bytes": size, "p50_ms": statistics.median(ms),
                           "p95_ms": percentile(ms, 0.95), "max_ms": max(ms)}
    version = version_for(app, route, client.get(route).get_data(as_text=True))
    if version is not None:
        poll = f"{route}{'&' if '?' in route else '?'}v={version}"
        ms, statuses, _ = timed(client, poll, runs)
        # A chart's version moves when the clock crosses a bucket (15 s at 1 h): those polls render again.
        row.update(unchanged_p50_ms=statistics.median(ms), unchanged_p95_ms=percentile(ms, 0.95),
                   unchanged_204=statuses.count(204), unchanged_runs=len(statuses))
    return row


def profile(client: FlaskClient, route: str, runs: int) -> None:
    """cProfile's top 30 functions by cumulative time over `runs` GETs of `route`."""
    client.get(route)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(route)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (what docs/benchmarks.md shows)."""
    lines = ["| route | bytes | p50 ms | p95 ms | max ms | unchanged poll (204) p50 / p95 ms |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        poll = "—"
        if "unchanged_p50_ms" in r:
            poll = f"{r['unchanged_p50_ms']:.2f} / {r['unchanged_p95_ms']:.2f}"
            if r["unchanged_204"] != r["unchanged_runs"]:
                poll += f" ({r['unchanged_204']}/{r['unchanged_runs']} were 204)"
        lines.append(f"| `{r['route']}` | {r['bytes']:,} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['max_ms']:.1f} | {poll} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="raw samples to fill (default 24)")
    parser.add_argument("--interval", type=float, default=5.0, help="metrics_interval the fill imitates")
    parser.add_argument("--runs", type=int, default=30, help="timed GETs per route, after one warm-up")
    parser.add_argument("--rollup-days", type=int, default=0, help="copy the day's roll-ups this many days back")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / ".bench" / "dashboard_render.json"))
    parser.add_argument("--profile", metavar="PATH", help="profile this route (e.g. /dashboard/gpu) instead")
    args = parser.parse_args()
    if args.runs < 1 or args.hours <= 0 or args.interval <= 0 or args.rollup_days < 0:
        parser.error("--runs, --hours and --interval must be positive, --rollup-days not negative")

    with tempfile.TemporaryDirectory() as tmp:
        app, backend = build(Path(tmp))
        svc = app.extensions[EXTENSION_KEY]
        client = app.test_client()
        serve_traffic(client, backend)
        collection = svc.monitor.collect_once()
        store, now = svc.monitor.store, collection.at
        template = [(s.metric.name, dict(s.labels), s.value) for s in collection.samples]
        label_sets = len({s.labels for s in collection.samples if s.metric.name.startswith("llm_window_")})
        assert label_sets, "no per-endpoint window samples: the traffic did not reach the collector"

        started = time.perf_counter()
        steps = fill(store, template, now, args.hours, args.interval)
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        assert store.maintain(now).ok
        maintain_s = time.perf_counter() - started
        if args.rollup_days:
            copy_rollups_back(store, now - args.hours * 3600, args.rollup_days)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        samples = store.db.execute("SELECT count(*) FROM samples").fetchone()[0]
        rollups = store.db.execute("SELECT count(*) FROM rollups").fetchone()[0]
        print(f"{len(template)} series per collection ({label_sets} api/endpoint/model label sets) x {steps} "
              f"collections ({args.hours:g} h at {args.interval:g} s) filled in {fill_s:.0f} s, maintain() "
              f"{maintain_s:.1f} s; store {samples:,} samples + {rollups:,} roll-ups, "
              f"{store.size_bytes() / 1e6:.0f} MB")

        if args.profile:
            profile(client, args.profile, args.runs)
            return
        rows = [measure(app, client, route, args.runs) for route in ROUTES]
        print(table(rows))
        slow = [r["route"] for r in rows if r["p95_ms"] > 200]
        if slow:
            print("p95 over 200 ms: " + ", ".join(slow) + " (see --profile)")
        result = {"hours": args.hours, "interval_s": args.interval, "runs": args.runs,
                  "rollup_days": args.rollup_days, "series_per_collection": len(template),
                  "window_label_sets": label_sets, "collections": steps, "fill_s": round(fill_s, 1),
                  "maintain_s": round(maintain_s, 1),
                  "store": {"samples": samples, "rollups": rollups, "bytes": store.size_bytes()}, "routes": rows}
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"written to {out}")


if __name__ == "__main__":
    main()
