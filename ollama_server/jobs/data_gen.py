"""Data-generation jobs: self_instruct and fix_eval_failures, written to trainer-ready shards; resumable by shard."""
from __future__ import annotations

import json
import logging
import math
import re
import zlib
from typing import Iterator
from typing import Optional

from ollama_server.engine.engine import Engine
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.jobs import eval_metrics
from ollama_server.jobs.datasets import read_examples
from ollama_server.jobs.datasets import resolve_dataset
from ollama_server.jobs.eval_run import GREEDY
from ollama_server.jobs.eval_run import failed_samples
from ollama_server.jobs.paths import JobPaths
from ollama_server.jobs.shards import ShardWriter
from ollama_server.jobs.shards import count_lines
from ollama_server.jobs.shards import dedupe_key
from ollama_server.jobs.store import JobStore
from ollama_server.jobs.worker import JobContext
from ollama_server.jobs.worker import JobFailed

log = logging.getLogger("ollama_server.jobs")
STRATEGIES = ("self_instruct", "fix_eval_failures")
# Seed tasks when a self_instruct job brings none: the model is asked for tasks *like* these, never given them
# as output. A domain without its own list uses the general one with the domain named in the prompt.
SEED_TASKS = {
    "math": ["What is 17 + 25?", "A shop sells pens at 3 dollars each. How much do 7 pens cost?",
             "What is 12 times 12?", "If a train travels 60 km in one hour, how far does it go in 3 hours?",
             "What is half of 86?"],
    "general": ["Name three primary colours.", "Explain what a noun is in one sentence.",
                "Give a synonym for the word 'happy'.", "Write one sentence about the sea."],
}
MAX_ATTEMPTS_PER_SAMPLE = 4  # a model that keeps repeating itself ends the job short instead of looping


def num_samples(config: dict) -> int:
    """num_samples, or the other seed's num_examples."""
    return int(config.get("num_samples") or config.get("num_examples") or 100)


def domain(config: dict) -> str:
    return str(config.get("domain") or config.get("target_domain") or "general")


def _sampling(job_id: str, n: int, temperature: float) -> SamplingParams:
    """Seeded per job and attempt: a resumed job asks the same questions again in the same order."""
    return SamplingParams(temperature=temperature, top_p=0.95, top_k=40, min_p=0.05,
                          seed=zlib.crc32(f"{job_id}:{n}".encode()), repeat_penalty=1.1)


def _ask(ctx: JobContext, engine: Engine, prompt: str, sampling: SamplingParams, max_tokens: int) -> str:
    request = GenerateRequest(model=ctx.job["model_id"], messages=(Message("user", prompt),),
                              max_tokens=max_tokens, sampling=sampling, dialect="jobs", endpoint="data_gen",
                              background=True, cap_to_context=True)
    return ctx.generate(engine, request).text.strip()


def _first_task(text: str) -> str:
    """The first non-empty line of the model's answer, without list marks or quotes."""
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)]|new task:|task:)\s*", "", line, flags=re.I).strip().strip('"\'')
        if line:
            return line[:500]
    return ""


class _Shards:
    """The job's shard writer and its record in the job's result (so a restart knows what is finished)."""

    def __init__(self, ctx: JobContext, paths: JobPaths, max_examples: int, base: dict):
        previous = (ctx.job.get("result") or {}).get("shards") or []
        self.done = [name for name in previous if (paths.shards_dir / name).exists()]
        self.count = sum(count_lines(paths.shards_dir / name) for name in self.done)
        self.writer = ShardWriter(paths.shards_dir, ctx.job_id, max_examples)
        self.writer.resume(self.done)
        self.ctx, self.base = ctx, base

    def add(self, record: dict) -> None:
        self.writer.add(record)
        self.count += 1
        self._publish()

    def _publish(self) -> None:
        finished = self.done + [n for n in self.writer.finished if n not in self.done]
        if finished != self.done:
            self.done = finished
            self.ctx.store.update_result(self.ctx.job_id, self.result())

    def close(self) -> dict:
        self.writer.close()
        self._publish()
        return self.result()

    def result(self) -> dict:
        return {**self.base, "shards": list(self.done), "examples": self.count}


def run_self_instruct(ctx: JobContext, engine: Engine, paths: JobPaths, max_examples: int) -> dict:
    """New instruction/response pairs in the style of seed tasks, de-duplicated against seeds and each other."""
    config, model_id = ctx.config, ctx.job["model_id"]
    target, area = num_samples(config), domain(config)
    seeds = [str(s) for s in config.get("seed_instructions") or []]
    if not seeds and config.get("seed_dataset"):
        seeds = [e.prompt for e in read_examples(resolve_dataset(config["seed_dataset"], paths.datasets_dir),
                                                 require_reference=False, limit=50)]
    seeds = seeds or SEED_TASKS.get(area, SEED_TASKS["general"])
    shards = _Shards(ctx, paths, max_examples, {"strategy": "self_instruct", "domain": area, "requested": target})
    seen = {dedupe_key(s) for s in seeds}
    for name in shards.done:  # a resumed job must not repeat what its finished shards hold
        for line in (paths.shards_dir / name).read_text(encoding="utf-8").splitlines():
            seen.add(dedupe_key(json.loads(line)["instruction"]))
    duplicates = attempts = 0
    ctx.progress(shards.count, target)
    while shards.count < target and attempts < target * MAX_ATTEMPTS_PER_SAMPLE:
        ctx.check()
        attempts += 1
        shown = [seeds[(attempts + i) % len(seeds)] for i in range(min(3, len(seeds)))]
        prompt = (f"Write one new {area} task, different from these examples. Reply with the task only.\n\n"
                  + "\n".join(f"- {s}" for s in shown) + "\n\nNew task:")
        task = _first_task(_ask(ctx, engine, prompt, _sampling(ctx.job_id, attempts, 0.9), 64))
        key = dedupe_key(task)
        if len(key) < 8 or key in seen:
            duplicates += 1
            continue
        seen.add(key)
        answer = _ask(ctx, engine, task, _sampling(ctx.job_id, -attempts, 0.7),
                      int(config.get("max_new_tokens", 128)))
        shards.add({"instruction": task, "input": "", "output": answer, "source": "self_instruct",
                    "strategy": "self_instruct", "domain": area, "model_id": model_id, "job_id": ctx.job_id})
        ctx.progress(shards.count, target)
    result = shards.close()
    result.update({"attempts": attempts, "duplicates_skipped": duplicates})
    return result


def _eval_examples(store: JobStore, paths: JobPaths, eval_job_id: str) -> dict[int, tuple[str, str]]:
    """index -> (prompt, reference) from the eval job's dataset (samples may have been logged without text)."""
    job = store.get(eval_job_id)
    try:
        path = resolve_dataset(job["config"]["dataset_ref"], paths.datasets_dir)
        return {e.index: (e.prompt, e.reference or "") for e in read_examples(path, require_reference=True)}
    except Exception:  # the dataset moved: the samples' own text is used
        return {}


def failures_to_fix(store: JobStore, paths: JobPaths, eval_job_id: str) -> Iterator[tuple[int, str, str, str]]:
    """(index, prompt, reference, wrong prediction) of each failed example of an eval run."""
    samples = failed_samples(paths, eval_job_id)
    if samples is None:
        raise JobFailed(f"eval job {eval_job_id} has no samples.jsonl in {paths.eval_run(eval_job_id)}")
    examples = _eval_examples(store, paths, eval_job_id)
    for sample in samples:
        prompt, reference = examples.get(sample["index"], (sample.get("prompt"), sample.get("reference")))
        if prompt and reference is not None:
            yield sample["index"], prompt, str(reference), str(sample.get("prediction") or "")


def run_fix_eval_failures(ctx: JobContext, engine: Engine, paths: JobPaths, max_examples: int) -> dict:
    """For each failed example: a worked answer that ends in the reference answer (one or more variants)."""
    config, model_id = ctx.config, ctx.job["model_id"]
    source = config.get("source_eval_run_id") or config.get("eval_job_id")
    failures = list(failures_to_fix(ctx.store, paths, source))
    target = min(num_samples(config) if (config.get("num_samples") or config.get("num_examples"))
                 else len(failures), len(failures) * int(config.get("max_variants", 4)))
    variants = math.ceil(target / len(failures)) if failures else 0
    plan = [(f, v) for v in range(variants) for f in failures][:target]  # the same order on every resume
    shards = _Shards(ctx, paths, max_examples, {"strategy": "fix_eval_failures", "eval_job_id": source,
                                                "failures": len(failures), "requested": target})
    ctx.progress(shards.count, len(plan))
    for (index, prompt, reference, wrong), variant in plan[shards.count:]:
        ctx.check()
        ask = (f"{prompt}\n\nThe correct answer is {reference}. Explain briefly how to get it, "
               f"then finish with: The answer is {reference}.")
        sampling = GREEDY if variant == 0 else _sampling(ctx.job_id, index * 100 + variant, 0.8)
        output = _ask(ctx, engine, ask, sampling, int(config.get("max_new_tokens", 128)))
        if not eval_metrics.score_example(("accuracy",), output, reference)["accuracy"]:
            output = (output + "\n" if output else "") + f"The answer is {reference}."  # the fix must be right
        shards.add({"instruction": prompt, "input": "", "output": output, "source": "fix_eval_failures",
                    "strategy": "fix_eval_failures", "model_id": model_id, "job_id": ctx.job_id,
                    "eval_job_id": source, "eval_index": index, "reference": reference,
                    "failed_prediction": wrong[:2000], "variant": variant})
        ctx.progress(shards.count, len(plan))
    return shards.close()


def run_data_gen(ctx: JobContext, engine: Engine, paths: JobPaths, max_examples: int) -> dict:
    strategy: Optional[str] = ctx.config.get("strategy")
    if strategy == "self_instruct":
        return run_self_instruct(ctx, engine, paths, max_examples)
    if strategy == "fix_eval_failures":
        return run_fix_eval_failures(ctx, engine, paths, max_examples)
    raise JobFailed(f"unknown strategy {strategy!r}")
