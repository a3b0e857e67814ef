"""/metrics and /api/metrics/dashboard with 24 h of samples in the store (four fake GPUs), and the store size.

Run: .venv/bin/python benchmarks/monitoring_apis.py  (not a test; numbers go into the closing note)
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_server import create_app  # noqa: E402
from ollama_server.services import EXTENSION_KEY  # noqa: E402
from ollama_server.settings import build_settings  # noqa: E402
from ollama_server.storage.metrics import Sample  # noqa: E402
from tests.fakes.backend import FakeBackend  # noqa: E402
from tests.fakes.nvml import FakeNvml  # noqa: E402

DAY, INTERVAL = 86400, 5


def p95(timings: list[float]) -> float:
    timings = sorted(timings)
    return timings[int(0.95 * (len(timings) - 1))] * 1000


def timed(client, path: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        assert client.get(path).status_code == 200, path
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    home = Path(tempfile.mkdtemp())
    (home / "models").mkdir()
    (home / "models" / "m.gguf").write_bytes(b"x" * 10)
    settings = build_settings({"models_dir": [str(home / "models")], "data_dir": str(home / "data")})
    app = create_app({"SETTINGS": settings, "BACKEND": FakeBackend(), "NVML": FakeNvml("four_detailed")})
    svc = app.extensions[EXTENSION_KEY]
    collection = svc.monitor.collect_once()
    store, now = svc.monitor.store, time.time()
    series = [(s.metric.name, dict(s.labels), s.value) for s in collection.samples]
    started = time.perf_counter()
    for step in range(DAY // INTERVAL):
        ts = now - DAY + step * INTERVAL
        store.insert(Sample(name, labels, value, ts) for name, labels, value in series)
    store.maintain(now)
    fill_s = time.perf_counter() - started
    client = app.test_client()
    metrics = timed(client, "/metrics", 200)
    dashboard = timed(client, "/api/metrics/dashboard", 200)
    charts = timed(client, "/api/metrics/dashboard?since=-86400&step=300", 30)
    print(f"{len(series)} series x {DAY // INTERVAL} collections (24 h at {INTERVAL} s) filled in {fill_s:.0f} s; "
          f"store {store.size_bytes() / 2**20:.0f} MiB")
    print(f"/metrics p95 {p95(metrics):.2f} ms; /api/metrics/dashboard p95 {p95(dashboard):.2f} ms; "
          f"with six 24 h series (step 300 s) p95 {p95(charts):.0f} ms")


if __name__ == "__main__":
    main()
