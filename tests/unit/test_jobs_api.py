"""The companion API's jobs on the fake back-end: queue, run, results, shards, cancel and every bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.backend import fake_logprob
from tests.waiting import wait_for

MATH = [{"question": "What is 2+3?", "answer": "5"}, {"question": "What is 4+4?", "answer": "8"},
        {"question": "What is 10-7?", "answer": "3"}, {"question": "What is 6*7?", "answer": "42"}]




@pytest.fixture
def app(make_app):
    built = make_app()
    yield built
    built.extensions["ollama_server"].close()


@pytest.fixture
def jobs(app):
    return app.extensions["ollama_server"].jobs


@pytest.fixture
def http(app):
    return app.test_client()


def write_dataset(jobs, name: str, rows, raw: str | None = None) -> Path:
    path = jobs.paths.datasets_dir / name
    path.write_text(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows))
    return path


def finished(http, job_id: str) -> dict:
    return wait_for(lambda: (lambda j: j if j["status"] in ("done", "failed", "cancelled") else None)(
        http.get(f"/jobs/{job_id}").get_json()), f"job {job_id} to finish")


def test_an_eval_job_writes_metrics_and_one_sample_line_per_example(http, jobs, fake_backend):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    for reply in ("The answer is 5.", "9", "3", "#### 42"):
        fake_backend.enqueue(reply)
    jobs.start()
    created = http.post("/eval/jobs", json={"model_id": "tiny", "name": "math_eval_step_1",
                                            "dataset_ref": "math_eval.jsonl",
                                            "metrics": ["accuracy", "exact_match", "avg_loss"]})
    assert created.status_code == 200, created.get_json()
    body = created.get_json()
    assert body["status"] == "pending" and body["job_id"].startswith("eval_")
    job = finished(http, body["job_id"])
    assert job["status"] == "done", job["error"]
    assert job["result"]["accuracy"] == 0.75 and job["result"]["correct"] == 3
    assert job["result"]["total_samples"] == 4 and job["progress"] == {"done": 4, "total": 4}
    run = jobs.paths.eval_run(body["job_id"])
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["index"] for s in samples] == [0, 1, 2, 3]
    assert [s["correct"] for s in samples] == [True, False, True, True]
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == 0.75
    assert json.loads((run / "config.json").read_text())["dataset_ref"] == "math_eval.jsonl"
    # avg_loss: the fake scores each token of the reference with fake_logprob(), whatever precedes it.
    model = fake_backend.loaded[0]
    expected = []
    for sample in samples:
        tokens = model.tokenize(sample["reference"], False)
        expected.append(-sum(fake_logprob(t) for t in tokens) / len(tokens))
    assert job["result"]["avg_loss"] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    assert http.get(f"/eval/jobs/{body['job_id']}").get_json()["type"] == "eval"


def test_fix_eval_failures_turns_each_failed_example_into_a_shard_line(http, jobs, fake_backend):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    for reply in ("5", "nine", "3", "41"):  # two failures: 4+4 and 6*7
        fake_backend.enqueue(reply)
    jobs.start()
    eval_id = http.post("/eval/jobs", json={"model_id": "tiny", "name": "m", "dataset_ref": "math_eval.jsonl"}
                        ).get_json()["job_id"]
    assert finished(http, eval_id)["status"] == "done"
    fake_backend.enqueue("4 plus 4 makes 8. The answer is 8.")
    fake_backend.enqueue("I think it is 40.")  # wrong: the corrected example must still end right
    created = http.post("/data_gen/jobs", json={"model_id": "tiny", "strategy": "fix_eval_failures",
                                                "config": {"source_eval_run_id": eval_id}})
    assert created.status_code == 200, created.get_json()
    gen_id = created.get_json()["job_id"]
    assert gen_id.startswith("datagen_")
    assert finished(http, gen_id)["status"] == "done"
    listed = http.get(f"/data_gen/jobs/{gen_id}").get_json()
    assert len(listed["shards"]) == 1 and listed["shards"][0].startswith("shard_")
    download = http.get(f"/shards/{listed['shards'][0]}")
    assert download.status_code == 200
    lines = [json.loads(line) for line in download.get_data(as_text=True).splitlines()]
    assert [(r["eval_index"], r["reference"]) for r in lines] == [(1, "8"), (3, "42")]
    assert all(r["instruction"] and r["output"] and r["strategy"] == "fix_eval_failures" for r in lines)
    assert lines[1]["output"].endswith("The answer is 42.")
    assert all(r["job_id"] == gen_id and r["eval_job_id"] == eval_id for r in lines)


@pytest.mark.parametrize("ref, words", [("../outside.jsonl", "outside the datasets directory"),
                                        ("/etc/passwd", "dataset_ref"), ("missing.jsonl", "dataset_ref")])
def test_it_refuses_a_dataset_outside_the_datasets_dir_and_queues_nothing(http, jobs, ref, words):
    (jobs.paths.datasets_dir.parent / "outside.jsonl").write_text(json.dumps(MATH[0]) + "\n")
    answer = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": ref})
    assert answer.status_code == 400
    assert words in answer.get_json()["detail"]
    assert http.get("/jobs").get_json()["jobs"] == []


def test_it_names_the_line_of_a_malformed_dataset(http, jobs):
    write_dataset(jobs, "bad.jsonl", None, raw=json.dumps(MATH[0]) + "\n" + json.dumps(MATH[1]) + "\n{oops\n")
    answer = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": "bad.jsonl"})
    assert answer.status_code == 400
    assert "line 3" in answer.get_json()["detail"]
    assert http.get("/jobs/stats").get_json()["pending"] == 0


def test_it_answers_404_for_an_unknown_model_in_the_seed_words(http, jobs):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    answer = http.post("/eval/jobs", json={"model_id": "nope", "name": "x", "dataset_ref": "math_eval.jsonl"})
    assert answer.status_code == 404 and answer.get_json()["detail"] == "Model nope not found"
    gen = http.post("/data_gen/jobs", json={"model_id": "nope", "strategy": "self_instruct"})
    assert gen.status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"model_id": "tiny", "strategy": "custom"}, "strategy"),
    ({"model_id": "tiny", "strategy": "dream"}, "strategy"),
    ({"model_id": "tiny", "strategy": "self_instruct", "config": {"num_samples": "ten"}}, "config.num_samples"),
    ({"model_id": "tiny", "strategy": "self_instruct", "config": {"output_dir": "/tmp"}}, "config.output_dir"),
    ({"model_id": "tiny", "strategy": "self_instruct", "config": {"temperature": 2}}, "config"),
    ({"model_id": "tiny", "strategy": "fix_eval_failures", "config": {}}, "config.source_eval_run_id"),
])
def test_it_refuses_a_bad_data_gen_request_naming_the_field(http, body, field):
    answer = http.post("/data_gen/jobs", json=body)
    assert answer.status_code == 400, answer.get_json()
    assert field in answer.get_json()["detail"]
    assert http.get("/jobs").get_json()["jobs"] == []


def test_fix_eval_failures_needs_a_finished_eval_job(http):
    answer = http.post("/data_gen/jobs", json={"model_id": "tiny", "strategy": "fix_eval_failures",
                                               "config": {"source_eval_run_id": "eval_20250101_000000"}})
    assert answer.status_code == 404 and "eval_20250101_000000" in answer.get_json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl", "metrics": ["bleu"]}, "metrics"),
    ({"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl", "max_samples": 0}, "max_samples"),
    ({"model_id": "tiny", "dataset_ref": "math_eval.jsonl"}, "name"),
    ({"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl", "shots": 5}, "shots"),
    ({"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl", "pattern": "(("}, "pattern"),
])
def test_it_refuses_a_bad_eval_request_naming_the_field(http, jobs, body, field):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    answer = http.post("/eval/jobs", json=body)
    assert answer.status_code == 400, answer.get_json()
    assert field in answer.get_json()["detail"]


def test_cancel_ends_a_pending_job_and_refuses_a_finished_one(http, jobs):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    job_id = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl"}
                       ).get_json()["job_id"]
    cancelled = http.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    again = http.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.get_json()["detail"]
    assert http.post("/jobs/eval_19990101_000000/cancel").get_json()["detail"] == \
        "Job eval_19990101_000000 not found"


def test_cancel_stops_a_running_eval_at_its_next_example(http, jobs, fake_backend):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    fake_backend.gate.clear()  # the first example's generation waits
    jobs.start()
    job_id = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl"}
                       ).get_json()["job_id"]
    wait_for(lambda: http.get(f"/jobs/{job_id}").get_json()["status"] == "running", "the job to run")
    assert http.post(f"/jobs/{job_id}/cancel").get_json()["cancel_requested"] is True
    fake_backend.gate.set()
    job = finished(http, job_id)
    assert job["status"] == "cancelled" and job["progress"]["done"] < 4
    assert http.get("/jobs/stats").get_json()["running"] == 0


def test_jobs_list_filters_and_counts(http, jobs):
    write_dataset(jobs, "math_eval.jsonl", MATH)
    first = http.post("/eval/jobs", json={"model_id": "tiny", "name": "a", "dataset_ref": "math_eval.jsonl"}
                      ).get_json()["job_id"]
    second = http.post("/eval/jobs", json={"model_id": "tiny", "name": "b", "dataset_ref": "math_eval.jsonl"}
                       ).get_json()["job_id"]
    assert second != first  # the same second: a suffix, never a collision
    http.post(f"/jobs/{first}/cancel")
    listed = http.get("/jobs?type=eval").get_json()["jobs"]
    assert [j["id"] for j in listed] == [second, first]
    assert set(listed[0]) >= {"id", "type", "model_id", "status", "created_at"}
    assert [j["id"] for j in http.get("/jobs?status=pending").get_json()["jobs"]] == [second]
    assert len(http.get("/jobs?limit=1").get_json()["jobs"]) == 1
    stats = http.get("/jobs/stats").get_json()
    assert (stats["pending"], stats["cancelled"], stats["running"], stats["done"]) == (1, 1, 0, 0)
    for query, field in (("type=training", "type"), ("status=lost", "status"), ("limit=0", "limit"),
                         ("limit=x", "limit")):
        answer = http.get(f"/jobs?{query}")
        assert answer.status_code == 400 and field in answer.get_json()["detail"]


def test_shard_downloads_refuse_odd_names_and_missing_files(http):
    assert http.get("/shards/..%2Fdb.sqlite").status_code in (400, 404)
    assert http.get("/shards/db.sqlite").status_code == 400
    missing = http.get("/shards/shard_2025-11-22_001.jsonl")
    assert missing.status_code == 404 and "not found" in missing.get_json()["detail"]


def test_an_interrupted_eval_resumes_after_its_last_complete_sample(make_app, fake_backend):
    app = make_app()
    svc = app.extensions["ollama_server"]
    http = app.test_client()
    write_dataset(svc.jobs, "math_eval.jsonl", MATH)
    job_id = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl"}
                       ).get_json()["job_id"]
    # What a SIGKILL leaves: the job running, two complete lines and half of a third.
    svc.jobs.store.mark_running(job_id)
    run = svc.jobs.paths.eval_run(job_id)
    run.mkdir(parents=True)
    done = [{"index": 0, "correct": True, "accuracy": True, "prediction": "5"},
            {"index": 1, "correct": False, "accuracy": False, "prediction": "9"}]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in done) + '{"index": 2, "corr')
    app.extensions["ollama_server"].close()
    restarted = make_app()
    try:
        for reply in ("3", "42"):
            fake_backend.enqueue(reply)
        restarted.extensions["ollama_server"].jobs.start()
        job = finished(restarted.test_client(), job_id)
        assert job["status"] == "done", job["error"]
        lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        assert [s["index"] for s in lines] == [0, 1, 2, 3]
        assert job["result"]["correct"] == 3 and job["result"]["total_samples"] == 4
        assert len(fake_backend.history) == 2  # only the two missing examples were generated again
    finally:
        restarted.extensions["ollama_server"].close()


def test_the_power_profile_bounds_how_many_jobs_run_at_once(http, jobs, fake_backend):
    write_dataset(jobs, "math_eval.jsonl", MATH[:1])
    fake_backend.gate.clear()
    jobs.start()
    ids = [http.post("/eval/jobs", json={"model_id": "tiny", "name": n, "dataset_ref": "math_eval.jsonl"}
                     ).get_json()["job_id"] for n in ("a", "b")]
    wait_for(lambda: http.get("/jobs/stats").get_json()["running"] == 1, "one job running")
    assert jobs.power.max_concurrent_jobs == 1  # "normal"
    assert http.get("/jobs/stats").get_json()["pending"] == 1
    fake_backend.gate.set()
    for job_id in ids:
        assert finished(http, job_id)["status"] == "done"


def test_a_job_whose_request_finds_the_queue_full_waits_and_goes_on(make_app, fake_backend):
    from ollama_server.engine.types import GenerateRequest

    app = make_app(max_queue=0)  # one slot, no queue: a second request is refused as busy
    svc = app.extensions["ollama_server"]
    http = app.test_client()
    try:
        write_dataset(svc.jobs, "math_eval.jsonl", MATH[:1])
        fake_backend.gate.clear()
        fake_backend.enqueue("interactive")
        interactive = svc.engine.submit(GenerateRequest(model="tiny", prompt="hi", max_tokens=32))
        wait_for(lambda: svc.engine.snapshot().running == 1, "the interactive request to hold the slot")
        fake_backend.enqueue("5")
        svc.jobs.start()
        job_id = http.post("/eval/jobs", json={"model_id": "tiny", "name": "x", "dataset_ref": "math_eval.jsonl"}
                           ).get_json()["job_id"]
        wait_for(lambda: [r for r in svc.engine.records.since(0)[0] if r.outcome == "rejected"],
                 "the job's request to be refused as busy")
        assert http.get(f"/jobs/{job_id}").get_json()["status"] == "running"
        fake_backend.gate.set()
        assert "".join(c.text for c in interactive) == "interactive"
        job = finished(http, job_id)
        assert job["status"] == "done" and job["result"]["correct"] == 1
    finally:
        fake_backend.gate.set()
        svc.close()


def test_a_stop_in_the_middle_of_an_example_leaves_the_job_to_resume_not_failed(make_app, fake_backend):
    app = make_app()
    svc = app.extensions["ollama_server"]
    write_dataset(svc.jobs, "math_eval.jsonl", MATH[:2])
    fake_backend.gate.clear()  # the first example's generation is under way when the server stops
    svc.jobs.start()
    job_id = app.test_client().post("/eval/jobs", json={"model_id": "tiny", "name": "x",
                                                        "dataset_ref": "math_eval.jsonl"}).get_json()["job_id"]
    wait_for(lambda: fake_backend.history, "the first example's generation")
    closing = __import__("threading").Thread(target=svc.close)
    closing.start()
    wait_for(svc.jobs.worker.stopping.is_set, "the stop to reach the job worker")
    fake_backend.gate.set()
    closing.join()
    assert svc.jobs.store.get(job_id)["status"] == "running"  # what a restart requeues, never "failed"
    assert svc.jobs.store.requeue_interrupted() == [job_id]
    assert svc.jobs.store.get(job_id)["status"] == "pending"
