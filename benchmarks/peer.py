#!/usr/bin/env python3
"""Our server against llama-server on the same GGUF, same client, workloads interleaved A B A B.

    python benchmarks/peer.py --llama-server PATH [--rounds 2] [--threads N] [--only a,b,c,d,e] [--model GGUF]
        [--ours-setting key=value ...] [--compare-variant key=value ...] [--json .bench/peer.json]

(a) greedy, 48 tokens, ignore_eos, 1 and 8 clients; (b) the same sampled (0.8 / top_k 40 / top_p 0.9);
(c) 8 clients sharing a cold ~1,500-token prefix, 32 sampled tokens; (d) 1 client, ~600-token passages
to rewrite or extract from, greedy, 160 tokens; (e) a ~3,000-token prompt arriving while 7 streams decode.
With --compare-variant, a third server (ours plus those settings) runs (d) too (and the workloads of
--variant-workloads) and (d)'s texts are compared.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import peer_workloads as wl  # noqa: E402

SLOTS, SLOT_CONTEXT = 8, 4096
WORKLOADS = {  # name: (letter, description, function(url, prompts, round))
    "a_greedy_1": ("a", "greedy, 1 client", lambda u, p, r: wl.workload_simple(u, p, wl.GREEDY, 1)),
    "a_greedy_8": ("a", "greedy, 8 clients", lambda u, p, r: wl.workload_simple(u, p, wl.GREEDY, 8)),
    "b_sampled_1": ("b", "sampled, 1 client", lambda u, p, r: wl.workload_simple(u, p, wl.SAMPLED, 1)),
    "b_sampled_8": ("b", "sampled, 8 clients", lambda u, p, r: wl.workload_simple(u, p, wl.SAMPLED, 8)),
    "c_shared_prefix": ("c", "shared cold prefix, 8 clients", wl.workload_shared),
    "d_grounded": ("d", "input-grounded, 1 client", wl.workload_grounded),
    "e_long_arrival": ("e", "long prompt vs 7 streams", wl.workload_interference),
}


class StartError(RuntimeError):
    """A server that did not come up, with what it said."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process on a loopback port, its log file, and its RSS (children included)."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, env: dict | None = None) -> None:
        self.name, self.url, self.log = name, f"http://127.0.0.1:{port}", log
        with open(log, "wb") as handle:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        """True once /health answers 200; a StartError as soon as the process has exited."""
        if self.process.poll() is not None:
            raise StartError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rss_mb(self) -> float:
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def stop(self) -> None:
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for child in children:  # gunicorn's worker, should the master have left it behind
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass


def wait_healthy(servers: list[Server], deadline_s: float = 300) -> None:
    """Poll every server together, so one that dies is reported at once rather than after the others' wait."""
    waiting, deadline = list(servers), time.monotonic() + deadline_s
    while waiting:
        waiting = [server for server in waiting if not server.healthy()]
        if waiting and time.monotonic() > deadline:
            tails = "\n".join(f"{s.name}:\n{s.log_tail()}" for s in waiting)
            raise StartError(f"not healthy after {deadline_s:.0f} s:\n{tails}")
        if waiting:
            time.sleep(0.25)


def start_ours(name: str, model: str, threads: int, workdir: Path, extra: dict) -> Server:
    """Our server (gunicorn master + worker) serving only `model`, 8 slots of 4096 tokens."""
    workdir.mkdir(parents=True)
    models = workdir / "models"
    models.mkdir()
    os.symlink(model, models / "bench.gguf")
    settings = {"models_dir": [str(models)], "default_context_size": SLOT_CONTEXT, "parallel_slots": SLOTS,
                "threads": threads, "log_level": "WARNING", "max_queue": 64, **extra}
    config = workdir / "bench.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    port = free_port()
    env = {**os.environ, "OLLAMA_SERVER_HOME": str(workdir / "home")}
    return Server(name, [sys.executable, "-m", "ollama_server", "--port", str(port), "--config", str(config)],
                  port, workdir / "server.log", env)


def start_llama(binary: str, model: str, threads: int, workdir: Path) -> Server:
    """llama-server with its defaults but for the shared KV size (8 x 4096), slots, threads, port and web UI."""
    port = free_port()
    command = [binary, "-m", model, "-c", str(SLOTS * SLOT_CONTEXT), "-np", str(SLOTS), "-t", str(threads),
               "-tb", str(threads), "--port", str(port), "--host", "127.0.0.1", "--no-webui"]
    return Server("llama-server", command, port, workdir / "llama-server.log")


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1000:.0f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_report(results: dict) -> None:
    print(f"\nmodel {results['model']}, {results['threads']} threads, {results['rounds']} rounds, "
          f"prompt tokens {results['prompt_tokens']}")
    head = f"{'workload':<34}{'server':<14}{'tok/s':>8}{'TTFT p50':>10}{'TTFT p95':>10}{'ITL p95':>9}{'err':>5}"
    print(head + "   (latencies in ms)\n" + "-" * len(head))
    for name, entry in results["workloads"].items():
        for server, rows in entry["servers"].items():
            m = rows["median"]
            extra = ""
            if "long_ttft_s" in m:
                extra = (f"  long TTFT {fmt(m['long_ttft_s'], 'ms')}, ITL p95 in its window "
                         f"{fmt(m.get('itl_p95_in_window_s'), 'ms')}")
            print(f"{entry['title']:<34}{server:<14}{m['tokens_per_s']:>8.1f}{fmt(m['ttft_p50_s'], 'ms'):>10}"
                  f"{fmt(m['ttft_p95_s'], 'ms'):>10}{fmt(m['itl_p95_s'], 'ms'):>9}{m['errors']:>5}{extra}")
    print("\nratios (tok/s: ours/theirs; latencies: theirs/ours; > 1: we are better)")
    for name, entry in results["workloads"].items():
        cells = ", ".join(f"{k} {fmt(v)}" for k, v in entry["ratio"].items())
        print(f"  {entry['title']:<34}{cells}")
    rss = results["rss_mb"]
    for when in ("after_warmup", "end"):
        line = ", ".join(f"{server} {values[when]:.0f} MB" for server, values in rss.items())
        print(f"RSS {when}: {line}; ours/theirs {rss['ours'][when] / rss['llama-server'][when]:.2f}")
    if "variant" in results:
        v = results["variant"]
        print(f"\nvariant {v['settings']}: (d) texts identical to ours {v['identical']}/{v['total']}; "
              f"tok/s ours/variant {fmt(v['tokens_per_s_ours_over_variant'])}; "
              f"ours == llama-server {v['identical_ours_llama']}/{v['total']}")


def run(args: argparse.Namespace, servers: dict, workdir: Path) -> dict:
    """Start, warm up, measure, report; every server in `servers` is stopped by the caller."""
    model = args.model or wl_default_model()
    extra = wl.parse_pairs(args.ours_setting, "--ours-setting")
    variant = wl.parse_pairs(args.compare_variant, "--compare-variant")
    check_settings(extra, "--ours-setting")
    if variant:
        check_settings({**extra, **variant}, "--compare-variant")
    servers["ours"] = start_ours("ours", model, args.threads, workdir / "ours", extra)
    servers["llama-server"] = start_llama(args.llama_server, model, args.threads, workdir)
    if variant:
        servers["variant"] = start_ours("variant", model, args.threads, workdir / "variant", {**extra, **variant})
    wait_healthy(list(servers.values()))
    for server in servers.values():  # warm-up: the first request pays for lazy loading
        warm = wl.complete(server.url, wl.turn("Say hello."), 4, wl.GREEDY)
        if not warm.ok:
            raise StartError(f"{server.name}'s warm-up request failed: {warm.error}")
    rss = {name: {"after_warmup": s.rss_mb()} for name, s in servers.items()}
    prompts = wl.Prompts(wl.llama_tokenizer(servers["llama-server"].url))
    only = set(args.only.split(","))
    results = {"model": model, "threads": args.threads, "rounds": args.rounds, "ours_settings": extra,
               "prompt_tokens": prompts.sizes(), "workloads": {}}
    for name, (letter, title, function) in WORKLOADS.items():
        if letter not in only:
            continue
        targets = [n for n in servers if n != "variant" or letter in args.variant_workloads.split(",")]
        per_server: dict = {n: [] for n in targets}
        for round_index in range(args.rounds):
            for server_name in targets:  # A B A B: ours, theirs, ours, theirs
                print(f"{name} round {round_index + 1}: {server_name}", file=sys.stderr, flush=True)
                per_server[server_name].append(function(servers[server_name].url, prompts, round_index))
        entry = {"title": title, "servers": {n: {"median": wl.median_of(r), "rounds": r}
                                             for n, r in per_server.items()}}
        entry["ratio"] = wl.ratios(entry["servers"]["ours"]["median"], entry["servers"]["llama-server"]["median"])
        results["workloads"][name] = entry
    for name, server in servers.items():
        rss[name]["end"] = server.rss_mb()
    results["rss_mb"] = rss
    if variant and "d_grounded" in results["workloads"]:
        d = results["workloads"]["d_grounded"]["servers"]
        texts = {n: [t for r in d[n]["rounds"] for t in r["texts"]] for n in d}
        results["variant"] = {
            "settings": variant, "total": len(texts["ours"]),
            "identical": sum(a == b for a, b in zip(texts["ours"], texts["variant"])),
            "identical_ours_llama": sum(a == b for a, b in zip(texts["ours"], texts["llama-server"])),
            "tokens_per_s_ours_over_variant": (d["ours"]["median"]["tokens_per_s"]
                                               / d["variant"]["median"]["tokens_per_s"]
                                               if d["variant"]["median"]["tokens_per_s"] else None)}
    return results


def wl_default_model() -> str:
    from ollama_server.models.default_model import ensure_default_model
    return str(ensure_default_model(Path(tempfile.gettempdir()) / "ollama_server_bench"))


def check_settings(settings: dict, option: str) -> None:
    """Refuse unknown or invalid settings before anything starts (our server would refuse them too)."""
    from ollama_server.settings import SettingsError
    from ollama_server.settings import build_settings
    try:
        build_settings(settings)
    except SettingsError as exc:
        raise StartError(f"{option}: {exc}") from None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"),
                        help="llama-server binary (default $LLAMA_SERVER; scripts/build_llama_server.sh builds it)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default="a,b,c,d,e", help="workload letters, comma-separated")
    parser.add_argument("--model", help="GGUF path (default: the bundled Gemma 3 270M)")
    parser.add_argument("--ours-setting", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compare-variant", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variant-workloads", default="d", help="workload letters the variant runs too (d always "
                        "compares texts)")
    parser.add_argument("--json", dest="json_path", default=str(ROOT / ".bench" / "peer.json"))
    args = parser.parse_args(argv)
    if not args.llama_server:
        parser.error("--llama-server PATH is required (or set LLAMA_SERVER)")
    if not os.access(args.llama_server, os.X_OK):
        print(f"peer: {args.llama_server} is not an executable llama-server", file=sys.stderr)
        return 1
    unknown = set(args.only.split(",")) - {"a", "b", "c", "d", "e"}
    if unknown or args.rounds < 1 or args.threads < 1:
        parser.error("--only takes letters a-e; --rounds and --threads must be positive")
    # SIGTERM (e.g. from `timeout`) stops the servers too, the way Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    servers: dict = {}
    with tempfile.TemporaryDirectory(prefix="peer_bench_") as tmp:
        try:
            results = run(args, servers, Path(tmp))
        except StartError as exc:
            print(f"peer: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("peer: interrupted", file=sys.stderr)
            return 130
        finally:
            for server in servers.values():
                server.stop()
    print_report(results)
    out = Path(args.json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
