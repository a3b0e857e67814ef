#!/usr/bin/env python3
"""Load a running server with streaming requests and report throughput and latency.

    python scripts/benchmark.py --url http://127.0.0.1:11435 --requests 16 --concurrency 4 --max-tokens 48 \
        [--api openai|ollama|tgi] [--model NAME] [--json out.json]

Each request streams; the output token count comes from the server's own usage numbers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from dataclasses import dataclass
from typing import Optional

import requests

PROMPTS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain, step by step and in detail, how bread is made from wheat.",
    "Describe a walk through a busy city market in the early morning.",
    "List many interesting facts about the planets of the solar system.",
]


@dataclass
class Outcome:
    """One request's result."""

    ok: bool
    tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    decode_s: float = 0.0
    error: str = ""


def _sse_lines(response):
    for raw in response.iter_lines():
        if raw.startswith(b"data:"):
            yield raw[5:].strip()


def _openai(url: str, model: Optional[str], prompt: str, max_tokens: int, started: float) -> Outcome:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    if model:
        body["model"] = model
    first = last = None
    tokens = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as response:
        if response.status_code != 200:
            return Outcome(False, error=f"HTTP {response.status_code}: {response.text[:200]}")
        for data in _sse_lines(response):
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                return Outcome(False, error=str(event["error"]))
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            if event.get("choices") and event["choices"][0].get("text"):
                last = time.perf_counter()
                first = first or last
    return _outcome(tokens, started, first, last)


def _ollama(url: str, model: Optional[str], prompt: str, max_tokens: int, started: float) -> Outcome:
    body = {"prompt": prompt, "stream": True, "options": {"num_predict": max_tokens, "temperature": 0}}
    if model:
        body["model"] = model
    first = last = None
    tokens = 0
    with requests.post(url + "/api/generate", json=body, stream=True, timeout=600) as response:
        if response.status_code != 200:
            return Outcome(False, error=f"HTTP {response.status_code}: {response.text[:200]}")
        for line in response.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            if "error" in event:
                return Outcome(False, error=event["error"])
            if event.get("response"):
                last = time.perf_counter()
                first = first or last
            if event.get("done"):
                tokens = event.get("eval_count", 0)
    return _outcome(tokens, started, first, last)


def _tgi(url: str, model: Optional[str], prompt: str, max_tokens: int, started: float) -> Outcome:
    body = {"inputs": prompt, "parameters": {"max_new_tokens": max_tokens, "details": True}}
    first = last = None
    tokens = 0
    with requests.post(url + "/generate_stream", json=body, stream=True, timeout=600) as response:
        if response.status_code != 200:
            return Outcome(False, error=f"HTTP {response.status_code}: {response.text[:200]}")
        for data in _sse_lines(response):
            event = json.loads(data)
            if "error" in event:
                return Outcome(False, error=event["error"])
            last = time.perf_counter()
            first = first or last
            if event.get("details"):
                tokens = event["details"]["generated_tokens"]
    return _outcome(tokens, started, first, last)


def _outcome(tokens: int, started: float, first: Optional[float], last: Optional[float]) -> Outcome:
    ended = time.perf_counter()
    if first is None:
        return Outcome(False, error="no output")
    return Outcome(True, tokens, first - started, ended - started, (last or first) - first)


CLIENTS = {"openai": _openai, "ollama": _ollama, "tgi": _tgi}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def run(url: str, requests_total: int, concurrency: int, max_tokens: int, api: str = "openai",
        model: Optional[str] = None) -> dict:
    """Send `requests_total` streaming requests, `concurrency` at a time; return the summary."""
    client = CLIENTS[api]
    counter = iter(range(requests_total))
    lock = threading.Lock()

    def one(_: int) -> Outcome:
        with lock:
            index = next(counter)
        started = time.perf_counter()
        try:
            return client(url.rstrip("/"), model, PROMPTS[index % len(PROMPTS)], max_tokens, started)
        except requests.RequestException as exc:
            return Outcome(False, error=str(exc))

    wall_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(one, range(requests_total)))
    wall = time.perf_counter() - wall_start
    good = [o for o in outcomes if o.ok]
    tokens = sum(o.tokens for o in good)
    decode_rates = [(o.tokens - 1) / o.decode_s for o in good if o.decode_s > 0 and o.tokens > 1]
    return {
        "api": api, "requests": requests_total, "concurrency": concurrency, "max_tokens": max_tokens,
        "wall_s": wall, "output_tokens": tokens, "aggregate_tokens_per_s": tokens / wall if wall else 0.0,
        "per_stream_decode_tokens_per_s": statistics.mean(decode_rates) if decode_rates else 0.0,
        "ttft_p50_s": percentile([o.ttft_s for o in good], 50), "ttft_p95_s": percentile([o.ttft_s for o in good], 95),
        "e2e_p50_s": percentile([o.total_s for o in good], 50), "e2e_p95_s": percentile([o.total_s for o in good], 95),
        "errors": len(outcomes) - len(good), "error_samples": [o.error for o in outcomes if not o.ok][:3],
        "outcomes": [asdict(o) for o in outcomes],
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:11435")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--api", choices=sorted(CLIENTS), default="openai")
    parser.add_argument("--model")
    parser.add_argument("--json", dest="json_path", help="also write the full results here")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.max_tokens < 1:
        parser.error("--requests, --concurrency and --max-tokens must be positive")
    summary = run(args.url, args.requests, args.concurrency, args.max_tokens, args.api, args.model)
    printable = {k: v for k, v in summary.items() if k != "outcomes"}
    print(json.dumps(printable, indent=2))
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
