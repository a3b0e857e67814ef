"""An eval job: each example through the engine, scored, one samples.jsonl line each; resumable after a crash."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from ollama_server.engine.engine import Engine
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.jobs import eval_metrics
from ollama_server.jobs.datasets import Example
from ollama_server.jobs.datasets import read_examples
from ollama_server.jobs.datasets import resolve_dataset
from ollama_server.jobs.paths import JobPaths
from ollama_server.jobs.worker import JobContext
from ollama_server.jobs.worker import JobFailed

log = logging.getLogger("ollama_server.jobs")
GREEDY = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, seed=0)


def write_json(path: Path, value: dict) -> None:
    """Write a JSON file whole or not at all (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(value, out, indent=2, ensure_ascii=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def completed_samples(path: Path, repair: bool = True) -> list[dict]:
    """The sample lines written so far; a last line cut short by a crash is removed from the file (`repair`,
    only by the job that owns the file: a reader leaves a line being written alone)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = data[:data.rfind(b"\n") + 1]  # a line is complete only with its newline
    if repair and len(keep) != len(data):
        with open(path, "r+b") as out:
            out.truncate(len(keep))
    samples = []
    for raw in keep.splitlines():
        if raw.strip():
            samples.append(json.loads(raw))
    return samples


def eval_request(model_id: str, example: Example, max_new_tokens: int) -> GenerateRequest:
    """The example's prompt as one user turn, greedy, as a background (job) request."""
    return GenerateRequest(model=model_id, messages=(Message("user", example.prompt),),
                           max_tokens=max_new_tokens, sampling=GREEDY, dialect="jobs", endpoint="eval",
                           background=True, cap_to_context=True)


def evaluate_example(ctx: JobContext, engine: Engine, example: Example, metrics: tuple[str, ...]) -> dict:
    """One sample line: the model's answer, each metric, and the reference's loss when asked."""
    config = ctx.config
    request = eval_request(ctx.job["model_id"], example, int(config.get("max_new_tokens", 64)))
    result = ctx.generate(engine, request)
    prediction = result.text.strip()
    pattern = example.extra.get("pattern") if isinstance(example.extra.get("pattern"), str) else None
    scores = eval_metrics.score_example(metrics, prediction, example.reference or "",
                                        pattern or config.get("pattern"))
    sample = {"index": example.index, "id": example.id, "prompt": example.prompt, "reference": example.reference,
              "prediction": prediction, **scores, "completion_tokens": result.usage.completion_tokens}
    if "avg_loss" in metrics:
        scored = engine.score(request, example.reference or "")
        sample["loss"] = round(scored.mean_nll, 6)
        sample["loss_tokens"] = scored.tokens
    return sample


def run_eval(ctx: JobContext, engine: Engine, paths: JobPaths) -> dict:
    """Run (or resume) an eval job; writes runs/eval/<id>/{config.json,samples.jsonl,metrics.json}."""
    config = ctx.config
    run_dir = paths.eval_run(ctx.job_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.json").exists():
        write_json(run_dir / "config.json", {"job_id": ctx.job_id, **config})
    metrics = eval_metrics.validate_metrics(config.get("metrics") or ["accuracy"])
    try:
        dataset = resolve_dataset(config["dataset_ref"], paths.datasets_dir)
        examples = read_examples(dataset, require_reference=True, limit=int(config.get("max_samples", 1000)))
    except Exception as exc:  # the dataset changed since it was checked at submission
        raise JobFailed(str(exc)) from None
    samples_path = run_dir / "samples.jsonl"
    samples = completed_samples(samples_path)
    done = {sample["index"] for sample in samples}
    total = len(examples)
    if done:
        log.info("eval %s resumes at %d/%d examples", ctx.job_id, len(done), total)
    ctx.progress(len(done), total)
    logging_on = bool(config.get("per_example_logging", True))
    with open(samples_path, "a", encoding="utf-8") as out:
        for example in examples:
            if example.index in done:
                continue
            try:
                sample = evaluate_example(ctx, engine, example, metrics)
            except (JobFailed, EngineError) as exc:
                ctx.check()
                raise JobFailed(f"example {example.index + 1} (line {example.line}): {exc}") from None
            if not logging_on:  # the line still records the outcome, which is what a resume needs
                sample = {k: v for k, v in sample.items() if k not in ("prompt", "prediction", "reference")}
            out.write(json.dumps(sample, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
            samples.append(sample)
            done.add(example.index)
            ctx.progress(len(done), total)
    result = eval_metrics.aggregate(samples, metrics)
    result.update({"name": ctx.job["name"], "dataset": dataset.name, "model_id": ctx.job["model_id"],
                   "run_dir": str(run_dir)})
    write_json(run_dir / "metrics.json", result)
    return result


def failed_samples(paths: JobPaths, eval_job_id: str) -> Optional[list[dict]]:
    """An eval run's samples that were not correct (None when the run has no samples file)."""
    path = paths.eval_run(eval_job_id) / "samples.jsonl"
    if not path.exists():
        return None
    return [sample for sample in completed_samples(path, repair=False) if not sample.get("correct")]
