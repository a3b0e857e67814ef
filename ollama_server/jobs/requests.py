"""Job requests (the seed's EvalJobRequest and DataGenJobRequest), checked whole before a job is queued."""
from __future__ import annotations

import re
from typing import Any
from typing import Optional

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from ollama_server.jobs import eval_metrics
from ollama_server.jobs.data_gen import STRATEGIES
from ollama_server.jobs.datasets import read_examples
from ollama_server.jobs.datasets import resolve_dataset
from ollama_server.jobs.paths import JobPaths
from ollama_server.jobs.store import JobStore


class JobRequestError(Exception):
    """A job request that cannot be queued: the HTTP status and a message naming the field."""

    def __init__(self, status: int, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class EvalJobRequest(BaseModel):
    """POST /eval/jobs (the seed's fields, plus the generation length and a dataset-wide regex)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=300)
    name: str = Field(min_length=1, max_length=200)
    dataset_ref: str = Field(min_length=1, max_length=4096)
    metrics: list[str] = Field(default_factory=lambda: ["accuracy"], max_length=10)
    max_samples: int = Field(default=1000, ge=1, le=1_000_000)
    per_example_logging: bool = True
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    pattern: Optional[str] = Field(default=None, max_length=1000)


class DataGenJobRequest(BaseModel):
    """POST /data_gen/jobs: strategy-specific keys live in `config` (both seeds' spellings accepted)."""

    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1, max_length=300)
    strategy: str
    config: dict[str, Any] = Field(default_factory=dict)
    num_samples: Optional[int] = Field(default=None, ge=1, le=1_000_000)


DATA_GEN_KEYS = {"num_samples", "num_examples", "domain", "target_domain", "output_dir", "seed_instructions",
                 "seed_dataset", "source_eval_run_id", "eval_job_id", "max_new_tokens", "max_variants"}
INT_KEYS = {"num_samples": (1, 1_000_000), "num_examples": (1, 1_000_000), "max_new_tokens": (1, 4096),
            "max_variants": (1, 100)}


def eval_config(body: EvalJobRequest, paths: JobPaths) -> dict:
    """The job's config, after checking the dataset (every line it will read), metrics and pattern."""
    try:
        metrics = eval_metrics.validate_metrics(body.metrics)
    except eval_metrics.MetricError as exc:
        raise JobRequestError(400, f"metrics: {exc}", "metrics") from None
    if body.pattern is not None:
        try:
            re.compile(body.pattern)
        except re.error as exc:
            raise JobRequestError(400, f"pattern: not a valid regular expression ({exc})", "pattern") from None
    dataset = _dataset(body.dataset_ref, paths, "dataset_ref")
    try:
        examples = read_examples(dataset, require_reference=True, limit=body.max_samples)
    except Exception as exc:  # DatasetError: names the file and the line
        raise JobRequestError(400, f"dataset_ref: {exc}", "dataset_ref") from None
    if not examples:
        raise JobRequestError(400, f"dataset_ref: {dataset.name} has no examples", "dataset_ref")
    return {**body.model_dump(), "metrics": list(metrics), "dataset_path": str(dataset),
            "examples": len(examples)}


def _dataset(ref: str, paths: JobPaths, param: str):
    try:
        return resolve_dataset(ref, paths.datasets_dir)
    except Exception as exc:  # DatasetError: outside the directory, missing, not .jsonl
        raise JobRequestError(400, f"{param}: {exc}", param) from None


def data_gen_config(body: DataGenJobRequest, paths: JobPaths, store: JobStore) -> dict:
    """The job's config: the strategy and its keys, checked (unknown keys refused, the source eval must exist)."""
    if body.strategy not in STRATEGIES:
        raise JobRequestError(400, f"strategy: unknown strategy {body.strategy[:100]!r}; choose from "
                                   f"{list(STRATEGIES)} ('custom' is not supported)", "strategy")
    unknown = sorted(set(body.config) - DATA_GEN_KEYS)
    if unknown:
        raise JobRequestError(400, f"config: unknown key(s) {unknown[:10]}; known: {sorted(DATA_GEN_KEYS)}",
                              "config")
    config = dict(body.config)
    if body.num_samples is not None:
        config["num_samples"] = body.num_samples
    for key, (low, high) in INT_KEYS.items():
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise JobRequestError(400, f"config.{key}: must be an integer from {low} to {high}", f"config.{key}")
    if config.get("output_dir") not in (None, "train_shards_out"):
        raise JobRequestError(400, "config.output_dir: shards are always written to train_shards_out/",
                              "config.output_dir")
    seeds = config.get("seed_instructions")
    if seeds is not None and (not isinstance(seeds, list) or not all(isinstance(s, str) and s for s in seeds)):
        raise JobRequestError(400, "config.seed_instructions: must be a list of non-empty strings",
                              "config.seed_instructions")
    if config.get("seed_dataset") is not None:
        if not isinstance(config["seed_dataset"], str):
            raise JobRequestError(400, "config.seed_dataset: must be a dataset file name", "config.seed_dataset")
        try:
            read_examples(_dataset(config["seed_dataset"], paths, "config.seed_dataset"), require_reference=False)
        except JobRequestError:
            raise
        except Exception as exc:
            raise JobRequestError(400, f"config.seed_dataset: {exc}", "config.seed_dataset") from None
    if body.strategy == "fix_eval_failures":
        source = config.get("source_eval_run_id") or config.get("eval_job_id")
        if not isinstance(source, str) or not source:
            raise JobRequestError(400, "config.source_eval_run_id: the eval job whose failures to fix is required",
                                  "config.source_eval_run_id")
        job = store.get(source)
        if job is None or job["type"] != "eval":
            raise JobRequestError(404, f"Job {source[:100]} not found (config.source_eval_run_id names no eval job)",
                                  "config.source_eval_run_id")
        if job["status"] != "done":
            raise JobRequestError(400, f"config.source_eval_run_id: eval job {source} is {job['status']}, "
                                       "not done", "config.source_eval_run_id")
    return {"strategy": body.strategy, **config}
