"""The Jobs page in a real Chromium: it loads cleanly, draws the checkpoint chart with a point per checkpoint,
follows a running job's progress as the store changes, and cancels a job from its button.

The app runs in this process on werkzeug's threaded server over the scripted fake back-end, with no job
worker started: the test stages every job state itself through the JobStore, so nothing else moves them."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

import pytest
from werkzeug.serving import make_server

from ollama_server.jobs.store import JobStore
from ollama_server.services import EXTENSION_KEY
from tests.browser.support import screenshot
from tests.browser.support import wait_until


@dataclass
class Served:
    url: str
    store: JobStore


@pytest.fixture
def served(make_app) -> Iterator[Served]:
    """The app (polling every second) on a loopback port, its job queue a JobStore the test writes to."""
    app = make_app(dashboard_refresh_seconds=1)
    jobs = app.extensions[EXTENSION_KEY].jobs  # built with its store, its worker not started (start() is not called)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="jobs-page-server", daemon=True)
    thread.start()
    try:
        yield Served(url=f"http://127.0.0.1:{server.server_port}", store=jobs.store)
    finally:
        server.shutdown()
        thread.join(timeout=30)


def eval_run(store: JobStore, model_id: str, name: str, **result) -> str:
    job = store.create("eval", model_id, {"model_id": model_id, "name": name, "dataset_ref": "math_eval.jsonl"},
                       name=name)
    store.mark_running(job["job_id"])
    store.finish(job["job_id"], "done", result=result)
    return job["job_id"]


def chart(page) -> dict:
    """The checkpoint chart as Plotly drew it: per trace its x and y, once drawn."""
    return page.eval_on_selector("#chart-checkpoints", """c => c.getAttribute('data-drawn') === 'true' && c.data ?
        {traces: c.data.map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})),
         axis: c.layout.yaxis.title.text, points: c.querySelectorAll('.scatterlayer .point').length} : null""")


def open_jobs(page, served: Served) -> None:
    page.goto(served.url + "/dashboard/jobs")
    page.wait_for_load_state("load")
    wait_until(lambda: page.evaluate("typeof htmx !== 'undefined'"), message="htmx loaded")


def test_the_empty_page_loads_cleanly_and_says_how_to_queue_a_job(served, page):
    open_jobs(page, served)
    assert page.locator("nav a[aria-current=page]").inner_text() == "Jobs"
    assert "No jobs yet" in page.locator("[data-testid=jobs-empty]").inner_text()
    assert page.locator("[data-testid=results-empty]").is_visible()


def test_the_chart_draws_a_point_per_checkpoint_and_follows_the_chosen_metric(served, page):
    for step, accuracy, loss in (("step-1000", 0.2, 2.5), ("step-2000", 0.45, 1.75), ("step-3000", 0.7, 1.0)):
        eval_run(served.store, f"qwen3-{step}", "math_eval", accuracy=accuracy, avg_loss=loss, total_samples=20,
                 correct=round(accuracy * 20))
    eval_run(served.store, "qwen3-step-3000", "logic_eval", accuracy=0.5, total_samples=10, correct=5)
    open_jobs(page, served)
    drawn = wait_until(lambda: chart(page), message="the checkpoint chart drawn")
    traces = {t["name"]: (t["x"], t["y"]) for t in drawn["traces"]}
    assert traces == {"math_eval": (["qwen3-step-1000", "qwen3-step-2000", "qwen3-step-3000"], [0.2, 0.45, 0.7]),
                      "logic_eval": (["qwen3-step-3000"], [0.5])}
    assert drawn["points"] == 4 and drawn["axis"] == "accuracy"
    assert page.locator("#job-results tr[data-run]").count() == 4
    screenshot(page, "jobs-results")

    page.select_option("#job-metric", "avg_loss")
    redrawn = wait_until(lambda: (lambda c: c if c and c["axis"] == "avg_loss" else None)(chart(page)),
                         message="the chart redrawn for avg_loss")
    assert [(t["name"], t["y"]) for t in redrawn["traces"]] == [("math_eval", [2.5, 1.75, 1.0])]


def test_a_running_jobs_progress_moves_on_the_page_as_the_store_changes(served, page):
    job = served.store.create("eval", "qwen3-step-1000", {}, name="math_eval")["job_id"]
    served.store.mark_running(job)
    served.store.progress(job, 1, 5)
    open_jobs(page, served)
    row = page.locator(f"tr[data-job='{job}']")
    assert row.locator("[data-testid=job-progress-text]").inner_text() == "1 / 5"
    served.store.progress(job, 4, 5)
    wait_until(lambda: row.locator("[data-testid=job-progress-text]").inner_text() == "4 / 5",
               message="the progress polled in")
    assert row.locator("progress").get_attribute("value") == "4"
    served.store.finish(job, "done", result={"accuracy": 0.8, "total_samples": 5, "correct": 4})
    wait_until(lambda: page.locator(f"tr[data-job='{job}']").get_attribute("data-status") == "done",
               message="the job shown done")
    # the results fragment polls too: the finished run's point appears without a reload
    wait_until(lambda: (lambda c: c and c["traces"] and c["traces"][0]["x"] == ["qwen3-step-1000"])(chart(page)),
               message="the finished run charted")


def test_the_cancel_button_cancels_a_pending_job(served, page):
    job = served.store.create("data_gen", "qwen3-step-1000", {"strategy": "self_instruct"})["job_id"]
    open_jobs(page, served)
    row = page.locator(f"tr[data-job='{job}']")
    assert row.get_attribute("data-status") == "pending"
    page.once("dialog", lambda dialog: dialog.accept())  # the button asks before cancelling
    row.get_by_role("button", name="Cancel").click()
    wait_until(lambda: page.locator(f"tr[data-job='{job}']").get_attribute("data-status") == "cancelled",
               message="the row shown cancelled")
    assert f"Cancelled {job}." in page.locator("[data-testid=jobs-message]").inner_text()
    assert served.store.get(job)["status"] == "cancelled"
    assert page.locator(f"tr[data-job='{job}'] button").count() == 0
