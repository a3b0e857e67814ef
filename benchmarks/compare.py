#!/usr/bin/env python3
"""Side-by-side throughput on one model and one set of settings, measured in one run.

    python benchmarks/compare.py [--max-tokens 48] [--runs 5] [--model PATH] [--json out.json]

(a) raw llama-cpp-python in-process, one stream: the ceiling for one stream;
(b) our server over HTTP (OpenAI streaming), concurrency 1;
(c) our server, concurrency 8, with 8 parallel slots (continuous batching);
(d) our server, concurrency 8, with 1 slot: the lock-serialized baseline (a server without batching).
Ratios matter, not absolute numbers: shared machines drift.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchmark import PROMPTS  # noqa: E402
from scripts.benchmark import run as run_http  # noqa: E402

CONTEXT = 2048


def default_model() -> str:
    from ollama_server.models.default_model import ensure_default_model
    return str(ensure_default_model(Path(tempfile.gettempdir()) / "ollama_server_bench"))


def raw_single_stream(model_path: str, max_tokens: int, runs: int, threads: int) -> dict:
    """Decode with llama-cpp-python directly: greedy, a fixed number of tokens, no HTTP, no queue."""
    import llama_cpp
    llama = llama_cpp.Llama(model_path=model_path, n_ctx=CONTEXT, n_batch=512, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    decode_rates, aggregate_rates, ttfts = [], [], []
    for index in range(runs):
        tokens = llama.tokenize(PROMPTS[index % len(PROMPTS)].encode(), add_bos=True)
        started = time.perf_counter()
        first = last = None
        count = 0
        for _ in llama.generate(tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, reset=True):
            last = time.perf_counter()
            first = first or last
            count += 1
            if count == max_tokens:
                break
        ended = time.perf_counter()
        decode_rates.append((count - 1) / (last - first))
        aggregate_rates.append(count / (ended - started))
        ttfts.append(first - started)
    llama.close()
    return {"per_stream_decode_tokens_per_s": statistics.median(decode_rates),
            "aggregate_tokens_per_s": statistics.median(aggregate_rates), "ttft_p50_s": statistics.median(ttfts)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_path: str, threads: int, workdir: Path, extra: dict) -> tuple[subprocess.Popen, str]:
    """Our server on a loopback port, serving only `model_path`."""
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    link = models / "bench.gguf"
    if not link.exists():
        os.symlink(model_path, link)
    port = free_port()
    settings = {"models_dir": [str(models)], "default_context_size": CONTEXT, "threads": threads,
                "log_level": "WARNING", "max_queue": 64, **extra}
    config = workdir / "bench.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    env = {**os.environ, "OLLAMA_SERVER_HOME": str(workdir / "home")}
    process = subprocess.Popen([sys.executable, "-m", "ollama_server", "--port", str(port), "--config", str(config)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError("server did not start")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--runs", type=int, default=5, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model", help="GGUF path (default: the bundled Gemma 3 270M)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    model_path = args.model or default_model()
    results: dict = {"model": model_path, "max_tokens": args.max_tokens, "threads": args.threads}

    results["a_raw_single"] = raw_single_stream(model_path, args.max_tokens, args.runs, args.threads)
    many = max(args.runs, args.concurrency * 2)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(model_path, args.threads, Path(tmp), {"parallel_slots": args.concurrency})
        try:
            run_http(url, 1, 1, 4)  # warm-up: first request pays for lazy initialisation
            results["b_server_c1"] = run_http(url, args.runs, 1, args.max_tokens)
            results["c_server_c8"] = run_http(url, many, args.concurrency, args.max_tokens)
        finally:
            stop_server(process)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(model_path, args.threads, Path(tmp), {"parallel_slots": 1})
        try:
            run_http(url, 1, 1, 4)
            results["d_serialized_c8"] = run_http(url, many, args.concurrency, args.max_tokens)
        finally:
            stop_server(process)
    for key in ("b_server_c1", "c_server_c8", "d_serialized_c8"):
        results[key].pop("outcomes", None)

    a, b = results["a_raw_single"], results["b_server_c1"]
    c, d = results["c_server_c8"], results["d_serialized_c8"]
    ratios = {
        "b/a per-stream decode tokens/s": b["per_stream_decode_tokens_per_s"] / a["per_stream_decode_tokens_per_s"],
        "b/a aggregate tokens/s (incl. prompt, HTTP)": b["aggregate_tokens_per_s"] / a["aggregate_tokens_per_s"],
        "c/d aggregate tokens/s (batching vs serialized, 8 clients)":
            c["aggregate_tokens_per_s"] / d["aggregate_tokens_per_s"],
        "c TTFT p95 s": c["ttft_p95_s"],
        "d TTFT p95 s": d["ttft_p95_s"],
    }
    results["ratios"] = ratios
    print(json.dumps(results, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
