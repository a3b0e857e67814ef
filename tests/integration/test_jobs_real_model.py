"""The training loop's jobs on the real model through the real server and our client: an eval with accuracy and
avg_loss, fix_eval_failures shards, and an eval that survives the server being SIGKILLed mid-run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from ollama_server.client import Client
from tests.conftest import ROOT
from tests.conftest import LiveServer
from tests.conftest import children_of
from tests.waiting import wait_for

DATASET = ROOT / "tests" / "data" / "math_eval.jsonl"
EXAMPLES = [json.loads(line) for line in DATASET.read_text().splitlines() if line.strip()]
SHARD_FIELDS = {"instruction", "input", "output", "source", "strategy", "model_id", "job_id", "eval_job_id",
                "eval_index", "reference"}


def setup_base(workdir: Path, bundled_gguf: Path) -> dict:
    """A base directory with the shipped dataset, and settings that serve the bundled model from its file."""
    base = workdir / "base"
    (base / "datasets").mkdir(parents=True)
    shutil.copy(DATASET, base / "datasets" / DATASET.name)
    return {"base_dir": str(base), "data_dir": str(workdir / "data"), "models_dir": f"[{bundled_gguf.parent}]",
            "default_context_size": 1024, "parallel_slots": 2, "log_level": "INFO"}


def the_model(client: Client) -> str:
    return client.list_models()["models"][0]["id"]




def test_an_eval_and_its_fix_eval_failures_shards_on_the_real_model(tmp_path, bundled_gguf):
    settings = setup_base(tmp_path, bundled_gguf)
    with LiveServer(tmp_path, settings) as server:
        client = Client(server.url)
        model = the_model(client)
        queued = client.eval_job(model, "math_eval", DATASET.name, metrics=["accuracy", "exact_match", "avg_loss"],
                                 max_new_tokens=24)
        job = client.wait_for_job(queued["job_id"], poll_interval=0.2, timeout=900)
        assert job["status"] == "done", job["error"]
        run = Path(settings["base_dir"]) / "runs" / "eval" / queued["job_id"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["total_samples"] == len(EXAMPLES)
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["avg_loss"] > 0.0
        samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        assert sorted(s["index"] for s in samples) == list(range(len(EXAMPLES)))
        assert metrics["correct"] == sum(1 for s in samples if s["correct"])
        assert all(s["loss"] > 0 and s["loss_tokens"] >= 1 for s in samples)
        failures = [s for s in samples if not s["correct"]]
        assert failures, "the 270M base model should miss at least 987 × 654"

        gen = client.data_gen_job(model, "fix_eval_failures", {"source_eval_run_id": queued["job_id"],
                                                               "max_new_tokens": 32})
        done = client.wait_for_job(gen["job_id"], poll_interval=0.2, timeout=900)
        assert done["status"] == "done", done["error"]
        shards = client.get_data_gen_job(gen["job_id"])["shards"]
        assert shards
        lines = []
        for name in shards:
            path = client.download_shard(name, tmp_path / "downloaded")
            lines += [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == len(failures)
        assert all(SHARD_FIELDS <= set(line) and line["output"] for line in lines)
        assert sorted(line["eval_index"] for line in lines) == sorted(s["index"] for s in failures)
        assert all(line["reference"] in line["output"] for line in lines)


def job_row(base: Path, job_id: str) -> tuple:
    with sqlite3.connect(base / "db.sqlite") as db:
        return db.execute("SELECT status, progress_done FROM jobs WHERE id = ?", (job_id,)).fetchone()


def test_an_eval_killed_mid_run_finishes_after_a_restart_with_one_line_per_example(tmp_path, bundled_gguf):
    settings = setup_base(tmp_path, bundled_gguf)
    base = Path(settings["base_dir"])
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    server = LiveServer(first_dir, settings)
    with server:
        client = Client(server.url)
        queued = client.eval_job(client.list_models()["models"][0]["id"], "math_eval", DATASET.name,
                                 metrics=["accuracy", "avg_loss"], max_new_tokens=24)
        job_id = queued["job_id"]
        wait_for(lambda: client.get_job(job_id)["progress"]["done"] >= 2, "two examples done")
        workers = children_of(server.process.pid)
        os.kill(server.process.pid, signal.SIGKILL)  # the master first: it must not start a new worker
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        wait_for(lambda: all(not Path(f"/proc/{pid}").exists() for pid in workers), "the worker to die")
    status, done_before = job_row(base, job_id)
    assert status == "running" and 2 <= done_before < len(EXAMPLES)

    with LiveServer(second_dir, settings) as restarted:
        client = Client(restarted.url)
        job = client.wait_for_job(job_id, poll_interval=0.2, timeout=900)
        assert job["status"] == "done", job["error"]
        assert job["attempts"] == 2
    run = base / "runs" / "eval" / job_id
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["index"] for s in samples] == list(range(len(EXAMPLES)))  # exactly one line each, in order
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["total_samples"] == len(EXAMPLES)
    assert metrics["correct"] == sum(1 for s in samples if s["correct"])


@pytest.mark.parametrize("body, status, words", [
    ({"model_id": "no-such-model", "name": "x", "dataset_ref": "math_eval.jsonl"}, 404, "Model no-such-model"),
    ({"model_id": "MODEL", "name": "x", "dataset_ref": "../../etc/passwd"}, 400, "dataset_ref"),
])
def test_bad_eval_requests_on_the_live_server_leave_no_job(live_server, body, status, words):
    import requests
    if body["model_id"] == "MODEL":
        body = {**body, "model_id": requests.get(live_server.url + "/models", timeout=30).json()["models"][0]["id"]}
    answer = requests.post(live_server.url + "/eval/jobs", json=body, timeout=30)
    assert answer.status_code == status and words in answer.json()["detail"]
    assert requests.get(live_server.url + "/jobs?status=running", timeout=30).json()["jobs"] == []
