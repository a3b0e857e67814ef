#!/usr/bin/env python3
"""Eval jobs beside interactive requests: what a running eval job costs chat traffic, and the job's own speed.

`make bench-jobs` (options: --help). One server (`python -m ollama_server`, parallel_slots 4) on the bundled Gemma 3 270M, base_dir in a temporary
directory, a dataset of N "What is a + b?" examples (answer a+b) in <base_dir>/datasets/. After one warm-up:
(A) idle: K streaming /v1/chat/completions requests one after another (greedy, max_tokens 32, ignore_eos so
    each has the same length), TTFT and decode tokens/s of each;
(B) an eval job (accuracy + avg_loss, max_new_tokens 32) is queued; once it is running, K more such requests
    (other prompts of the same shape) one after another. GET /jobs/<id> must still say `running` at the end;
    if the job finished first the run says so (rerun with more --examples, or --auto-scale R retries B up
    to R times with a larger dataset);
(C) once that job is done, an identical eval job alone: wall time and examples/s.
Reported: TTFT p50/p95 and tokens/s idle vs during the job (ratios), the job's examples/s during B and alone,
and its metrics. JSON goes to .bench/jobs.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from peer import Server  # noqa: E402
from peer import StartError  # noqa: E402
from peer import free_port  # noqa: E402
from peer import wait_healthy  # noqa: E402
from peer_workloads import percentile  # noqa: E402
from peer_workloads import sse_events  # noqa: E402

TERMINAL = {"done", "failed", "cancelled"}
METRICS = ["accuracy", "avg_loss"]
_ADJECTIVES = ["a quiet", "a brave", "an old", "a curious", "a tired", "a cheerful", "a lost", "a clever",
               "a tiny", "a famous", "a lonely", "a patient"]
_NOUNS = ["lighthouse keeper", "river otter", "baker", "violin maker", "desert fox", "harbour master",
          "astronomer", "beekeeper", "forest ranger", "jazz pianist", "clock maker", "mountain guide"]


def prompt(index: int) -> str:
    """The index-th interactive prompt: same shape for every index, never the same text twice (up to 144)."""
    adjective, noun = _ADJECTIVES[index % len(_ADJECTIVES)], _NOUNS[(index // len(_ADJECTIVES)) % len(_NOUNS)]
    return f"Write a short story about {adjective} {noun}."


def write_dataset(datasets: Path, count: int, seed: int = 0) -> str:
    """`count` additions in tests/data/math_eval.jsonl's shape; the file's name (a dataset_ref)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        lines.append(json.dumps({"id": f"add-{i + 1}", "question": f"What is {a} + {b}?", "answer": str(a + b)}))
    datasets.mkdir(parents=True, exist_ok=True)
    name = f"bench_math_{count}.jsonl"
    (datasets / name).write_text("\n".join(lines) + "\n")
    return name


def start_server(workdir: Path, args: argparse.Namespace) -> tuple[Server, Path]:
    """The real server serving the bundled model from its directory, jobs under a temporary base_dir."""
    from ollama_server.models.default_model import ensure_default_model
    gguf = ensure_default_model(Path(tempfile.gettempdir()) / "ollama_server_bench")
    base = workdir / "base"
    (base / "datasets").mkdir(parents=True)
    settings = {"base_dir": str(base), "data_dir": str(workdir / "data"), "models_dir": [str(gguf.parent)],
                "parallel_slots": args.slots, "default_context_size": args.context, "threads": args.threads,
                "log_level": "WARNING"}
    config = workdir / "bench.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    port = free_port()
    env = {**os.environ, "OLLAMA_SERVER_HOME": str(workdir / "home")}
    server = Server("ours", [sys.executable, "-m", "ollama_server", "--port", str(port), "--config", str(config)],
                    port, workdir / "server.log", env)
    return server, base


def chat(url: str, model: str, text: str, max_tokens: int, ignore_eos: bool) -> dict:
    """One streamed OpenAI chat completion: TTFT, completion tokens (from usage), decode and end-to-end tokens/s."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True,
            "max_tokens": max_tokens, "temperature": 0, "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    sent = time.perf_counter()
    chunk_times, usage, error = [], None, ""
    try:
        with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=600) as response:
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
            else:
                lines = response.iter_lines()  # kept referenced: dropping it mid-read closes the stream
                for event in sse_events(lines):
                    if "error" in event:
                        error = str(event["error"])[:200]
                        break
                    if event.get("usage"):
                        usage = event["usage"].get("completion_tokens")
                    if event.get("choices") and event["choices"][0].get("delta", {}).get("content"):
                        chunk_times.append(time.perf_counter())
    except (requests.RequestException, ValueError) as exc:
        error = str(exc)[:200]
    ended = time.perf_counter()
    tokens = usage if usage is not None else len(chunk_times)
    ok = bool(chunk_times) and not error
    decode_s = chunk_times[-1] - chunk_times[0] if len(chunk_times) > 1 else 0.0
    return {"ok": ok, "error": error if not ok else "", "sent": sent, "ended": ended,
            "ttft_s": chunk_times[0] - sent if chunk_times else None, "tokens": tokens,
            "e2e_s": ended - sent,
            "decode_tokens_per_s": (tokens - 1) / decode_s if decode_s > 0 and tokens > 1 else None,
            "e2e_tokens_per_s": tokens / (ended - sent) if ok else None}


def run_requests(url: str, model: str, first: int, args: argparse.Namespace, phase: str) -> list[dict]:
    out = []
    for i in range(args.requests):
        print(f"{phase}: request {i + 1}/{args.requests}", file=sys.stderr, flush=True)
        out.append(chat(url, model, prompt(first + i), args.max_tokens, not args.allow_eos))
    return out


def summarize(rows: list[dict]) -> dict:
    good = [r for r in rows if r["ok"]]
    ttfts = [r["ttft_s"] for r in good]
    decode = [r["decode_tokens_per_s"] for r in good if r["decode_tokens_per_s"]]
    e2e = [r["e2e_tokens_per_s"] for r in good if r["e2e_tokens_per_s"]]
    return {"requests": len(rows), "errors": len(rows) - len(good),
            "error_samples": [r["error"] for r in rows if not r["ok"]][:3],
            "completion_tokens": sum(r["tokens"] for r in good),
            "ttft_p50_s": percentile(ttfts, 50), "ttft_p95_s": percentile(ttfts, 95),
            "decode_tokens_per_s_p50": statistics.median(decode) if decode else None,
            "decode_tokens_per_s_mean": statistics.mean(decode) if decode else None,
            "e2e_tokens_per_s_p50": statistics.median(e2e) if e2e else None}


def get_job(url: str, job_id: str) -> dict:
    response = requests.get(f"{url}/jobs/{job_id}", timeout=30)
    if response.status_code != 200:
        raise StartError(f"GET /jobs/{job_id}: HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def queue_eval(url: str, model: str, name: str, dataset: str, count: int, max_new_tokens: int) -> str:
    body = {"model_id": model, "name": name, "dataset_ref": dataset, "metrics": METRICS, "max_samples": count,
            "max_new_tokens": max_new_tokens}
    response = requests.post(url + "/eval/jobs", json=body, timeout=60)
    if response.status_code not in (200, 201, 202):
        raise StartError(f"POST /eval/jobs: HTTP {response.status_code}: {response.text[:300]}")
    return response.json()["job_id"]


def wait_job(url: str, job_id: str, until: set[str], limit_s: float = 3600) -> tuple[dict, float]:
    """Poll every 0.1 s until the job's status is in `until` (or terminal); the record and when it was seen."""
    deadline = time.monotonic() + limit_s
    while True:
        record = get_job(url, job_id)
        if record["status"] in until or record["status"] in TERMINAL:
            return record, time.perf_counter()
        if time.monotonic() > deadline:
            raise StartError(f"job {job_id} still {record['status']} after {limit_s:.0f} s")
        time.sleep(0.1)


class JobWatcher(threading.Thread):
    """Samples GET /jobs/<id> every 0.2 s while phase B runs: (perf_counter, status, progress done)."""

    def __init__(self, url: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.samples, self.stopping = url, job_id, [], threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                record = get_job(self.url, self.job_id)
                self.samples.append((time.perf_counter(), record["status"], record["progress"]["done"]))
            except (requests.RequestException, StartError, KeyError, ValueError):
                pass
            self.stopping.wait(0.2)

    def finished_at(self) -> Optional[float]:
        return next((t for t, status, _ in self.samples if status in TERMINAL), None)

    def running_at(self, moment: float) -> bool:
        """The job was seen running at the last sample up to `moment` and at the first one from it."""
        before = [s for s in self.samples if s[0] <= moment]
        after = [s for s in self.samples if s[0] >= moment]
        return bool(before and after and before[-1][1] == "running" and after[0][1] == "running")


def iso_seconds(start: Optional[str], end: Optional[str]) -> Optional[float]:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def phase_b(url: str, model: str, base: Path, count: int, args: argparse.Namespace) -> dict:
    dataset = write_dataset(base / "datasets", count)
    job_id = queue_eval(url, model, "bench_beside_interactive", dataset, count, args.max_new_tokens)
    record, _ = wait_job(url, job_id, {"running"})
    if record["status"] in ("failed", "cancelled"):
        raise StartError(f"eval job {job_id} ended {record['status']}: {record['error']}")
    watcher = JobWatcher(url, job_id)
    watcher.samples.append((time.perf_counter(), record["status"], record["progress"]["done"]))
    watcher.start()
    started, done_at_start = time.perf_counter(), record["progress"]["done"]
    rows = run_requests(url, model, args.requests, args, f"B (job {job_id}, {count} examples)")
    wall = time.perf_counter() - started
    end = get_job(url, job_id)
    watcher.stopping.set()
    watcher.join()
    watcher.samples.append((time.perf_counter(), end["status"], end["progress"]["done"]))
    watcher.samples.sort()
    still_running = end["status"] == "running"
    for row in rows:
        row["beside_job"] = watcher.running_at(row["sent"]) and watcher.running_at(row["ended"])
    done_in_b = end["progress"]["done"] - done_at_start
    finished = watcher.finished_at()
    job_span = (finished - started) if finished else wall
    suggest = None
    if not still_running:  # enough examples to outlast phase B by a quarter at the rate seen
        rate = done_in_b / job_span if job_span > 0 else 0
        suggest = max(2 * count, math.ceil(rate * wall * 1.25) + done_at_start) if rate else 2 * count
    return {"job_id": job_id, "examples": count, "dataset": dataset, "wall_s": wall,
            "job_running_at_end": still_running, "job_status_at_end": end["status"],
            "job_progress_at_start": done_at_start, "job_progress_at_end": end["progress"]["done"],
            "job_examples_per_s": done_in_b / job_span if job_span > 0 else None,
            "requests_beside_job": sum(r["beside_job"] for r in rows), "suggested_examples": suggest,
            "summary": summarize(rows), "rows": rows}


def phase_c(url: str, model: str, dataset: str, count: int, args: argparse.Namespace) -> dict:
    queued = time.perf_counter()
    job_id = queue_eval(url, model, "bench_alone", dataset, count, args.max_new_tokens)
    print(f"C: eval job {job_id} alone, {count} examples", file=sys.stderr, flush=True)
    record, seen_running = wait_job(url, job_id, {"running"})
    record, seen_done = wait_job(url, job_id, TERMINAL)
    if record["status"] != "done":
        raise StartError(f"eval job {job_id} ended {record['status']}: {record['error']}")
    wall = seen_done - seen_running  # 0.1 s polling; the records' timestamps have 1 s resolution
    total = (record.get("result") or {}).get("total_samples", count)
    return {"job_id": job_id, "examples": total, "wall_s": wall, "queued_to_done_s": seen_done - queued,
            "wall_s_from_record": iso_seconds(record.get("started_at"), record.get("completed_at")),
            "examples_per_s": total / wall if wall > 0 else None, "metrics": record.get("result")}


def ratio(during, idle) -> Optional[float]:
    return during / idle if during is not None and idle else None


def run(args: argparse.Namespace, servers: list, workdir: Path) -> dict:
    server, base = start_server(workdir, args)
    servers.append(server)
    wait_healthy([server])
    models = requests.get(server.url + "/models", timeout=30).json()["models"]
    model = models[0]["id"]
    # The first request pays for loading the model: one of the measured shape, not measured.
    warm = chat(server.url, model, "Say hello to a friend.", args.max_tokens, not args.allow_eos)
    if not warm["ok"]:
        raise StartError(f"warm-up request failed: {warm['error']}\n{server.log_tail()}")

    idle_rows = run_requests(server.url, model, 0, args, "A (idle)")
    attempts, count = [], args.examples
    for attempt in range(args.auto_scale + 1):
        b = phase_b(server.url, model, base, count, args)
        attempts.append({k: v for k, v in b.items() if k not in ("rows", "summary")})
        if b["job_running_at_end"] or attempt == args.auto_scale:
            break
        print(f"B: the eval job finished before the {args.requests} requests did; again with "
              f"{b['suggested_examples']} examples", file=sys.stderr, flush=True)
        wait_job(server.url, b["job_id"], TERMINAL)
        count = b["suggested_examples"]
    first_job, _ = wait_job(server.url, b["job_id"], TERMINAL)
    c = phase_c(server.url, model, b["dataset"], b["examples"], args)

    idle, during = summarize(idle_rows), b["summary"]
    warnings = []
    if not b["job_running_at_end"]:
        warnings.append(f"the eval job ({b['examples']} examples) finished before phase B ended: only "
                        f"{b['requests_beside_job']}/{args.requests} requests ran beside it; rerun with "
                        f"--examples {b['suggested_examples']} (or --auto-scale 2)")
    if idle["errors"] or during["errors"]:
        warnings.append(f"errors: idle {idle['errors']}, during the job {during['errors']}: "
                        f"{(idle['error_samples'] + during['error_samples'])[:2]}")
    return {
        "model": model, "slots": args.slots, "threads": args.threads, "context": args.context,
        "requests": args.requests, "max_tokens": args.max_tokens, "ignore_eos": not args.allow_eos,
        "eval_max_new_tokens": args.max_new_tokens, "metrics_asked": METRICS,
        "idle": {"summary": idle, "rows": idle_rows},
        "during_job": {**{k: v for k, v in b.items() if k != "rows"}, "rows": b["rows"]},
        "phase_b_attempts": attempts,
        "first_job_status": first_job["status"], "first_job_metrics": first_job.get("result"),
        "eval_alone": c,
        "ratios": {"ttft_p50_during_over_idle": ratio(during["ttft_p50_s"], idle["ttft_p50_s"]),
                   "ttft_p95_during_over_idle": ratio(during["ttft_p95_s"], idle["ttft_p95_s"]),
                   "decode_tokens_per_s_during_over_idle": ratio(during["decode_tokens_per_s_p50"],
                                                                 idle["decode_tokens_per_s_p50"]),
                   "eval_examples_per_s_beside_over_alone": ratio(b["job_examples_per_s"], c["examples_per_s"])},
        "warnings": warnings,
    }


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.0f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_report(r: dict) -> None:
    idle, during, b, c = r["idle"]["summary"], r["during_job"]["summary"], r["during_job"], r["eval_alone"]
    print(f"\nmodel {r['model']}, {r['slots']} slots, {r['threads']} threads, {r['requests']} requests per phase, "
          f"max_tokens {r['max_tokens']} (ignore_eos {r['ignore_eos']}), eval {b['examples']} examples, "
          f"max_new_tokens {r['eval_max_new_tokens']}")
    head = f"{'interactive (one at a time)':<34}{'idle':>10}{'during job':>12}{'during/idle':>13}"
    print(head + "\n" + "-" * len(head))
    rows = [("TTFT p50 (ms)", "ttft_p50_s", "ms"), ("TTFT p95 (ms)", "ttft_p95_s", "ms"),
            ("decode tokens/s p50", "decode_tokens_per_s_p50", ""),
            ("end-to-end tokens/s p50", "e2e_tokens_per_s_p50", ""), ("errors", "errors", "")]
    for title, key, unit in rows:
        print(f"{title:<34}{fmt(idle[key], unit):>10}{fmt(during[key], unit):>12}"
              f"{fmt(ratio(during[key], idle[key]) if key != 'errors' else None):>13}")
    print(f"\neval job {c['examples']} examples: alone {fmt(c['examples_per_s'])} examples/s "
          f"(wall {fmt(c['wall_s'])} s, job {c['job_id']}); beside the interactive requests "
          f"{fmt(b['job_examples_per_s'])} examples/s ({b['job_progress_at_end'] - b['job_progress_at_start']} "
          f"examples in phase B, job {b['job_id']})")
    metrics = c["metrics"] or {}
    print("eval metrics: " + ", ".join(f"{k} {fmt(metrics.get(k))}" for k in
                                       ("accuracy", "correct", "total_samples", "avg_loss")))
    print(f"job still running at the end of phase B: {b['job_running_at_end']} "
          f"({b['requests_beside_job']}/{r['requests']} requests ran wholly beside it)")
    for warning in r["warnings"]:
        print(f"WARNING: {warning}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=24, help="eval dataset size N (default 24)")
    parser.add_argument("--requests", type=int, default=12, help="interactive requests per phase K (default 12)")
    parser.add_argument("--max-tokens", type=int, default=32, help="interactive max_tokens")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="the eval job's max_new_tokens")
    parser.add_argument("--slots", type=int, default=4, help="parallel_slots")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--context", type=int, default=1024, help="default_context_size (per slot)")
    parser.add_argument("--auto-scale", type=int, default=0, metavar="R",
                        help="if the job ends before phase B does, retry B up to R times with a larger dataset")
    parser.add_argument("--allow-eos", action="store_true",
                        help="let interactive answers stop at end-of-turn (default: ignore_eos, fixed length)")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / ".bench" / "jobs.json"))
    args = parser.parse_args(argv)
    if min(args.examples, args.requests, args.max_tokens, args.max_new_tokens, args.slots, args.threads) < 1 \
            or args.auto_scale < 0:
        parser.error("counts, token limits, slots and threads must be positive; --auto-scale at least 0")
    # SIGTERM (e.g. from `timeout`) stops the server too, the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    servers: list = []
    with tempfile.TemporaryDirectory(prefix="jobs_bench_") as tmp:
        try:
            results = run(args, servers, Path(tmp))
        except StartError as exc:
            print(f"jobs_interference: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("jobs_interference: interrupted", file=sys.stderr)
            return 130
        finally:
            for server in servers:
                server.stop()
    print_report(results)
    out = Path(args.json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
