#!/usr/bin/env python3
"""Where an engine step goes with 8 slots decoding: llama_decode versus everything else (Python).

    python benchmarks/step_profile.py [--slots 8] [--tokens 64] [--sampled] [--threads N] [--json F]

Runs the engine's ModelRunner in-process on the bundled model (no HTTP), `--slots` requests at once, and
reads the runner's StepProfile: time building batches, in llama_decode, and sampling/emitting tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_server.engine.backend import LoadOptions  # noqa: E402
from ollama_server.engine.generation import Generation  # noqa: E402
from ollama_server.engine.llama_backend import LlamaBackend  # noqa: E402
from ollama_server.engine.runner import ModelRunner  # noqa: E402
from ollama_server.engine.drafting import Speculation  # noqa: E402
from ollama_server.engine.types import GenerateRequest  # noqa: E402
from ollama_server.engine.types import SamplingParams  # noqa: E402
from ollama_server.engine.types import collect  # noqa: E402
from ollama_server.models.default_model import ensure_default_model  # noqa: E402

PROMPTS = ["Write a long story about a lighthouse keeper.", "Explain how bread is made.",
           "Describe a busy city market.", "List facts about the planets."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--sampled", action="store_true", help="temperature 0.8, top_k 40, top_p 0.9 (else greedy)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    path = str(ensure_default_model(Path(tempfile.gettempdir()) / "ollama_server_bench"))
    backend = LlamaBackend()
    model = backend.load(path, LoadOptions(n_ctx=1024, n_slots=args.slots, n_batch=512, n_threads=args.threads))
    runner = ModelRunner("bench", model, 64, speculation=Speculation(enabled=False))
    sampling = SamplingParams(temperature=0.8, top_k=40, top_p=0.9) if args.sampled else SamplingParams(temperature=0)
    try:
        generations = []
        for index in range(args.slots):
            prompt = PROMPTS[index % len(PROMPTS)]
            request = GenerateRequest(model="bench", prompt=prompt, sampling=sampling, max_tokens=args.tokens,
                                      ignore_eos=True)
            tokens = model.tokenize(prompt, add_special=True)
            generations.append(Generation(request, "bench", tokens, args.tokens, deadline=time.monotonic() + 600))
        started = time.perf_counter()
        for generation in generations:
            runner.enqueue(generation)
        results = [collect("bench", generation) for generation in generations]
        wall = time.perf_counter() - started
    finally:
        runner.stop()
        backend.close()
    profile = runner.profile
    total = profile.prepare_s + profile.decode_s + profile.sample_s
    report = {
        "slots": args.slots, "tokens_per_request": args.tokens, "sampled": args.sampled, "steps": profile.steps,
        "completion_tokens": sum(r.usage.completion_tokens for r in results), "wall_s": wall,
        "ms_per_step": {"build_batch": 1000 * profile.prepare_s / profile.steps,
                        "llama_decode": 1000 * profile.decode_s / profile.steps,
                        "sample_and_emit": 1000 * profile.sample_s / profile.steps},
        "share_outside_llama_decode": (profile.prepare_s + profile.sample_s) / total,
    }
    print(json.dumps(report, indent=2))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
