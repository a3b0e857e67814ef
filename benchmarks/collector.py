"""Collector cost per cycle with four fake GPUs (CPU time and wall time), and /metrics-free by design.

Run: .venv/bin/python benchmarks/collector.py  (not a test; numbers go into the issue's closing note)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_server import create_app  # noqa: E402
from ollama_server.services import EXTENSION_KEY  # noqa: E402
from ollama_server.settings import build_settings  # noqa: E402
from tests.fakes.backend import FakeBackend  # noqa: E402
from tests.fakes.nvml import FakeNvml  # noqa: E402


def main(cycles: int = 200) -> None:
    home = Path(tempfile.mkdtemp())
    (home / "models").mkdir()
    (home / "models" / "m.gguf").write_bytes(b"x" * 10)
    settings = build_settings({"models_dir": [str(home / "models")], "data_dir": str(home / "data")})
    app = create_app({"SETTINGS": settings, "BACKEND": FakeBackend(), "NVML": FakeNvml("four_detailed")})
    monitor = app.extensions[EXTENSION_KEY].monitor
    monitor.collect_once()  # first open: migrations
    cpu, wall = [], []
    for _ in range(cycles):
        c0, w0 = time.process_time(), time.perf_counter()
        monitor.collect_once()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    cpu.sort()
    wall.sort()
    print(f"collector, 4 fake GPUs, {len(monitor.latest.samples)} samples per cycle, {cycles} cycles: "
          f"CPU p50 {statistics.median(cpu) * 1000:.2f} ms, p95 {cpu[int(0.95 * cycles)] * 1000:.2f} ms; "
          f"wall p50 {statistics.median(wall) * 1000:.2f} ms, p95 {wall[int(0.95 * cycles)] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
