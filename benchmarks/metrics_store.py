#!/usr/bin/env python3
"""How big the metrics store gets and how fast its chart query is, on a day of realistic samples.

    python benchmarks/metrics_store.py [--hours 24] [--interval 5] [--runs 50] [--rollup-days 30] [--keep DIR]

Fills `--hours` of samples at `--interval` seconds for 40 series (4 GPUs x 8 metrics, 4 host, 4
request series), one transaction per collection as the collector will write them; rolls them up;
prints the size on disk, then copies the day's roll-ups back to `--rollup-days` days (the steady
state: one day raw plus a month of roll-ups) and prints that size and the p95 of `series()` for
1 h, 24 h and 30 day charts. Measured, not asserted: absolute times drift on shared machines.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_server.storage.metrics import MetricsStore  # noqa: E402
from ollama_server.storage.metrics import Sample  # noqa: E402

GPU_METRICS = ("gpu_temperature_celsius", "gpu_utilization_percent", "gpu_memory_used_bytes",
               "gpu_memory_total_bytes", "gpu_power_draw_watts", "gpu_power_limit_watts",
               "gpu_fan_speed_percent", "gpu_sm_clock_hertz")
HOST_METRICS = ("host_cpu_percent", "host_memory_used_bytes", "process_resident_memory_bytes", "host_load1")
REQUEST_METRICS = ("requests_active", "requests_queued", "request_duration_seconds", "generated_tokens_per_second")
DIALECTS = ("openai", "ollama", "vllm", "tgi")


def collection(ts: float) -> list[Sample]:
    """One collector pass: 40 samples with plausible, moving values."""
    wave = math.sin(ts / 600.0)
    samples = [Sample(metric, {"gpu": str(gpu)}, 50.0 + 20.0 * wave + gpu + i, ts)
               for gpu in range(4) for i, metric in enumerate(GPU_METRICS)]
    samples += [Sample(metric, {}, 30.0 + 10.0 * wave + i, ts) for i, metric in enumerate(HOST_METRICS)]
    samples += [Sample(metric, {"dialect": DIALECTS[i]}, 2.0 + wave, ts) for i, metric in enumerate(REQUEST_METRICS)]
    return samples


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def timed(fn, runs: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of `runs` calls, and checks the call returns something."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
        assert result, "the query returned nothing"
    return statistics.median(times), p95(times)


def table_bytes(store: MetricsStore) -> dict[str, int]:
    """Bytes per table with its indexes (sqlite's dbstat), so the 30-day figure can be extrapolated."""
    rows = store.db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    owner = {name: table for table in ("samples", "rollups")
             for name in [table] + [i.name for i in store.db[table].indexes]}
    owner.update({f"sqlite_autoindex_{t}_1": t for t in ("samples", "rollups")})
    sizes: dict[str, int] = {}
    for name, size in rows:
        sizes[owner.get(name, "other")] = sizes.get(owner.get(name, "other"), 0) + size
    return sizes


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--rollup-days", type=int, default=30)
    parser.add_argument("--keep", help="directory for the database (default: a temporary one, removed)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep or tmp) / "metrics.db"
        path.unlink(missing_ok=True)
        end = math.floor(time.time() / 3600) * 3600.0
        start = end - args.hours * 3600
        clock = [end]
        store = MetricsStore(path, clock=lambda: clock[0])

        insert_ms = []
        ts = start
        while ts < end:
            started = time.perf_counter()
            assert store.insert(collection(ts)).ok
            insert_ms.append((time.perf_counter() - started) * 1000)
            ts += args.interval
        rows = store.db.execute("SELECT count(*) FROM samples").fetchone()[0]
        print(f"filled {rows} samples ({len(insert_ms)} collections of 40) in {sum(insert_ms) / 1000:.1f} s;"
              f" insert per collection p50 {statistics.median(insert_ms):.2f} ms, p95 {p95(insert_ms):.2f} ms")

        started = time.perf_counter()
        assert store.rollup(end).ok
        print(f"first rollup of {args.hours:g} h: {time.perf_counter() - started:.2f} s")
        assert store.insert(collection(end)).ok  # one more minute, then the steady-state per-minute run
        started = time.perf_counter()
        assert store.rollup(end + 60).ok
        print(f"steady rollup (5 min grace): {(time.perf_counter() - started) * 1000:.1f} ms")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sizes = table_bytes(store)
        print(f"size on disk after {args.hours:g} h: {mb(store.size_bytes())}"
              f" (raw samples + indexes {mb(sizes.get('samples', 0))},"
              f" {args.hours:g} h of roll-ups {mb(sizes.get('rollups', 0))})")
        per_day_rollups = sizes.get("rollups", 0) * 24 / args.hours
        raw_per_day = sizes.get("samples", 0) * 24 / args.hours
        print(f"estimate for 24 h raw + {args.rollup_days} d roll-ups (by the roll-ups' size):"
              f" {mb(raw_per_day + per_day_rollups * args.rollup_days)}")

        chart = lambda hours, step: (  # noqa: E731
            lambda: store.series_by_labels("gpu_temperature_celsius", end - hours * 3600, step))
        one = lambda hours, step: (  # noqa: E731
            lambda: store.series("gpu_temperature_celsius", end - hours * 3600, step, labels={"gpu": "0"}))
        for label, fn in (("1 h chart, 4 GPUs, 15 s step", chart(1, 15)),
                          ("1 h chart, one GPU, 15 s step", one(1, 15)),
                          ("24 h chart, 4 GPUs, 5 min step", chart(24, 300)),
                          ("24 h chart, one GPU, 5 min step", one(24, 300))):
            p50, p95_ms = timed(fn, args.runs)
            print(f"series() {label}: p50 {p50:.1f} ms, p95 {p95_ms:.1f} ms")

        if args.rollup_days > 1:
            # Copy the day's roll-ups backwards: a month of roll-ups without simulating a month.
            started = time.perf_counter()
            with store.db.atomic():
                for day in range(1, args.rollup_days):
                    store.db.execute("INSERT OR IGNORE INTO rollups SELECT minute - ?, metric, labels, count, sum,"
                                     " min, max, last FROM rollups WHERE minute >= ?", [day * 86400.0, start])
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            count = store.db.execute("SELECT count(*) FROM rollups").fetchone()[0]
            print(f"steady state, {args.hours:g} h raw + {args.rollup_days} d roll-ups ({count} rows, copied in"
                  f" {time.perf_counter() - started:.1f} s): {mb(store.size_bytes())} on disk")
            for label, fn in (("30 d chart, 4 GPUs, 1 h step", chart(24 * args.rollup_days - 1, 3600)),
                              ("30 d chart, one GPU, 1 h step", one(24 * args.rollup_days - 1, 3600)),
                              ("24 h chart, 4 GPUs, 5 min step", chart(24, 300))):
                p50, p95_ms = timed(fn, args.runs)
                print(f"series() {label}: p50 {p50:.1f} ms, p95 {p95_ms:.1f} ms")
            clock[0] = end + args.rollup_days * 86400  # everything is now old: time one prune
            started = time.perf_counter()
            pruned = store.prune()
            print(f"prune of everything ({pruned.rows} rows): {time.perf_counter() - started:.1f} s")
        store.close()


if __name__ == "__main__":
    main()
