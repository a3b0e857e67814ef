"""The dashboard's Jobs page through the Flask test client: the queue with its progress and counts (a polled
fragment), cancel (CSRF-protected), eval results with a metric charted across checkpoints, shard links, and
the empty states; jobs are staged in a real JobStore with the store's own methods."""
from __future__ import annotations

import html
import json
import re

import pytest

from ollama_server.dashboard import charts
from ollama_server.dashboard.jobs import checkpoint_lines
from ollama_server.jobs.store import JobStore
from ollama_server.services import EXTENSION_KEY


def svc(app):
    return app.extensions[EXTENSION_KEY]


class JobsDashboard:
    """A test client on an app whose job queue is a real JobStore, sending the CSRF token as htmx does."""

    def __init__(self, app, store: JobStore):
        self.app = app
        self.store = store
        self.client = app.test_client()
        page = self.client.get("/dashboard/").text
        self.token = re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)

    def page(self, **args) -> str:
        response = self.client.get("/dashboard/jobs", query_string=args)
        assert response.status_code == 200, response.text
        return response.text

    def cancel(self, job_id: str):
        return self.client.post("/dashboard/actions/jobs/cancel", data={"job_id": job_id},
                                headers={"X-CSRF-Token": self.token, "HX-Request": "true"})

    def eval_run(self, model_id: str, name: str, **result) -> str:
        """An eval job taken through running to done with `result`; its id."""
        job = self.store.create("eval", model_id, {"model_id": model_id, "name": name,
                                                   "dataset_ref": "math_eval.jsonl"}, name=name)
        self.store.mark_running(job["job_id"])
        self.store.finish(job["job_id"], "done", result=result)
        return job["job_id"]


@pytest.fixture
def dash(make_app):
    app = make_app()  # its Jobs is built (store on <data_dir>/db.sqlite) but its worker never started
    return JobsDashboard(app, svc(app).jobs.store)


def version_in(text: str) -> str:
    match = re.search(r'"v": "([0-9a-f]+)"', text)
    assert match, "the fragment carries no version"
    return match.group(1)


def row_of(page: str, job_id: str) -> str:
    match = re.search(rf'<tr data-job="{re.escape(job_id)}".*?</tr>', page, re.S)
    assert match, f"no row for {job_id}"
    return match.group(0)


def figure_in(page: str) -> dict:
    match = re.search(r'id="chart-checkpoints" data-figure="([^"]*)"', page)
    assert match, "no checkpoint chart on the page"
    return json.loads(html.unescape(match.group(1)))


# --- navigation and empty states ---------------------------------------------------------------------

def test_every_dashboard_page_links_to_the_jobs_page_in_its_nav(dash):
    for path in ("/dashboard/", "/dashboard/models", "/dashboard/jobs"):
        nav = re.search(r"<nav.*?</nav>", dash.client.get(path).text, re.S).group(0)
        assert 'href="/dashboard/jobs"' in nav and ">Jobs</a>" in nav
    assert 'href="/dashboard/jobs" aria-current="page"' in dash.page()


def test_the_page_says_no_jobs_yet_and_how_to_queue_one_when_the_store_is_empty(dash):
    page = dash.page()
    assert 'data-testid="jobs-empty"' in page and "No jobs yet" in page and "/eval/jobs" in page
    assert 'data-testid="results-empty"' in page and 'data-testid="shards-empty"' in page
    assert "<tr data-job=" not in page


def test_the_page_says_no_jobs_yet_when_the_server_runs_no_job_queue(dash):
    svc(dash.app).jobs = None
    page = dash.page()
    assert "No jobs yet" in page and "runs no job queue" in page
    assert dash.client.get("/dashboard/partials/jobs").status_code == 200
    assert dash.client.get("/dashboard/partials/job-results").status_code == 200
    assert dash.client.get("/dashboard/partials/job-shards").status_code == 200


# --- the queue --------------------------------------------------------------------------------------

def test_the_queue_lists_each_job_with_type_model_name_status_times_and_progress(dash):
    pending = dash.store.create("eval", "qwen3-step-5000", {}, name="math_eval_step_5000")["job_id"]
    running = dash.store.create("data_gen", "qwen3-step-5000", {"strategy": "self_instruct"})["job_id"]
    dash.store.mark_running(running)
    dash.store.progress(running, 3, 10)
    failed = dash.store.create("eval", "qwen3-step-6000", {}, name="logic_eval")["job_id"]
    dash.store.mark_running(failed)
    dash.store.finish(failed, "failed", error="dataset logic_eval.jsonl not found")
    page = dash.page()

    row = row_of(page, pending)
    assert 'data-status="pending"' in row and "qwen3-step-5000" in row and "math_eval_step_5000" in row
    assert ">eval<" in row and "Cancel" in row
    created = dash.store.get(pending)["created_at"]
    assert created.replace("T", " ") in row
    row = row_of(page, running)
    assert 'data-status="running"' in row and ">data_gen<" in row
    assert '<progress max="10" value="3">' in row and "3 / 10" in row
    assert dash.store.get(running)["started_at"].replace("T", " ") in row
    row = row_of(page, failed)
    assert 'data-status="failed"' in row and "dataset logic_eval.jsonl not found" in row
    assert "Cancel" not in row  # a finished job has nothing to cancel
    assert dash.store.get(failed)["completed_at"].replace("T", " ") in row
    # newest first, as the store lists them
    assert page.index(f'data-job="{failed}"') < page.index(f'data-job="{running}"') < page.index(f'data-job="{pending}"')


def test_the_counts_per_status_are_the_stores(dash):
    dash.store.create("eval", "m1", {}, name="a")
    dash.store.create("eval", "m2", {}, name="b")
    dash.eval_run("m3", "c", accuracy=0.5)
    counts = re.search(r'data-testid="job-counts">.*?</p>', dash.page(), re.S).group(0)
    assert re.search(r'data-count="pending">pending <strong>2</strong>', counts)
    assert re.search(r'data-count="done">done <strong>1</strong>', counts)
    assert re.search(r'data-count="jobs_last_hour">done in the last hour <strong>1</strong>', counts)


def test_the_queue_fragment_answers_204_while_nothing_changed_and_the_new_progress_after_it_moved(dash):
    job = dash.store.create("eval", "m1", {}, name="math")["job_id"]
    dash.store.mark_running(job)
    dash.store.progress(job, 1, 4)
    first = dash.client.get("/dashboard/partials/jobs")
    assert first.status_code == 200 and "1 / 4" in first.text
    version = version_in(first.text)
    assert dash.client.get("/dashboard/partials/jobs", query_string={"v": version}).status_code == 204
    dash.store.progress(job, 2, 4)
    moved = dash.client.get("/dashboard/partials/jobs", query_string={"v": version})
    assert moved.status_code == 200 and '<progress max="4" value="2">' in moved.text
    assert version_in(moved.text) != version


def poll_seconds(text: str) -> float:
    return float(re.search(r'hx-trigger="every ([0-9.]+)s"', text).group(1))


def test_the_queue_polls_faster_while_a_job_is_pending_or_running(dash):
    idle = poll_seconds(dash.client.get("/dashboard/partials/jobs").text)
    assert idle == svc(dash.app).settings.dashboard_refresh_seconds
    dash.store.create("eval", "m1", {}, name="math")
    assert poll_seconds(dash.client.get("/dashboard/partials/jobs").text) == min(2, idle)


# --- cancel -----------------------------------------------------------------------------------------

def test_cancel_without_the_csrf_token_is_refused_and_leaves_the_job_pending(dash):
    job = dash.store.create("eval", "m1", {}, name="math")["job_id"]
    response = dash.client.post("/dashboard/actions/jobs/cancel", data={"job_id": job})
    assert response.status_code == 403 and "CSRF" in response.text
    wrong = dash.client.post("/dashboard/actions/jobs/cancel", data={"job_id": job},
                             headers={"X-CSRF-Token": "not-the-token"})
    assert wrong.status_code == 403
    assert dash.store.get(job)["status"] == "pending"


def test_cancel_of_a_pending_job_cancels_it_and_answers_the_queue_without_its_button(dash):
    job = dash.store.create("eval", "m1", {}, name="math")["job_id"]
    response = dash.cancel(job)
    assert response.status_code == 200 and f"Cancelled {job}." in response.text
    assert dash.store.get(job)["status"] == "cancelled"
    row = row_of(response.text, job)
    assert 'data-status="cancelled"' in row and "Cancel</button>" not in row


def test_cancel_of_a_running_job_asks_it_to_stop_and_shows_it_stopping(dash):
    job = dash.store.create("data_gen", "m1", {"strategy": "self_instruct"})["job_id"]
    dash.store.mark_running(job)
    response = dash.cancel(job)
    assert response.status_code == 200 and f"Asked {job} to stop" in response.text
    assert dash.store.cancel_requested(job) and dash.store.get(job)["status"] == "running"
    row = row_of(response.text, job)
    assert "stopping…" in row and "Cancel</button>" not in row


def test_cancel_of_an_unknown_job_answers_404_naming_it(dash):
    response = dash.cancel("eval_19990101_000000")
    assert response.status_code == 404 and "job &#39;eval_19990101_000000&#39; not found" in response.text


def test_cancel_without_a_job_id_answers_400_naming_the_field(dash):
    response = dash.cancel("")
    assert response.status_code == 400 and "job_id is required" in response.text


def test_cancel_of_a_finished_job_answers_422_and_leaves_it_done(dash):
    job = dash.eval_run("m1", "math", accuracy=0.5)
    response = dash.cancel(job)
    assert response.status_code == 422 and f"{job} is already done: nothing to cancel." in response.text
    assert dash.store.get(job)["status"] == "done"


def test_cancel_on_a_server_without_a_job_queue_answers_404(dash):
    svc(dash.app).jobs = None
    response = dash.cancel("eval_19990101_000000")
    assert response.status_code == 404 and "runs no job queue" in response.text


# --- eval results and the checkpoint chart ------------------------------------------------------------

def test_each_finished_eval_run_shows_the_metrics_its_result_holds(dash):
    first = dash.eval_run("step-1000", "math_eval", accuracy=0.25, total_samples=8, correct=2, avg_loss=1.5)
    second = dash.eval_run("step-2000", "math_eval", accuracy=0.5, total_samples=8, correct=4)
    failed = dash.store.create("eval", "step-3000", {}, name="math_eval")["job_id"]
    dash.store.mark_running(failed)
    dash.store.finish(failed, "failed", error="boom")
    results = re.search(r'<section class="card" id="job-results".*?</section>', dash.page(), re.S).group(0)
    headers = re.findall(r"<th>([^<]*)</th>", results)
    assert headers == ["Run", "Eval", "Model", "Finished", "accuracy", "avg_loss", "total_samples", "correct"]
    row = re.search(rf'<tr data-run="{first}".*?</tr>', results, re.S).group(0)
    assert re.findall(r'data-metric="(\w+)">([^<]*)<', row) == [
        ("accuracy", "0.2500"), ("avg_loss", "1.5000"), ("total_samples", "8"), ("correct", "2")]
    row = re.search(rf'<tr data-run="{second}".*?</tr>', results, re.S).group(0)
    assert 'data-metric="avg_loss">—<' in row
    assert f'data-run="{failed}"' not in results  # only finished runs have results
    assert "exact_match" not in results


def test_the_chart_has_a_line_per_eval_name_and_a_point_per_checkpoint_in_run_order(dash):
    dash.eval_run("step-1000", "math_eval", accuracy=0.2)
    dash.eval_run("step-2000", "math_eval", accuracy=0.4)
    dash.eval_run("step-1000", "logic_eval", accuracy=0.1)
    dash.eval_run("step-3000", "math_eval", accuracy=0.7)
    dash.eval_run("step-2000", "math_eval", accuracy=0.5)  # a re-run: the latest counts, step-2000 moves last
    figure = figure_in(dash.page())
    traces = {t["name"]: list(zip(t["x"], t["y"])) for t in figure["data"]}
    assert traces == {"math_eval": [("step-1000", 0.2), ("step-3000", 0.7), ("step-2000", 0.5)],
                      "logic_eval": [("step-1000", 0.1)]}
    axis = figure["layout"]["xaxis"]
    assert axis["type"] == "category" and axis["categoryarray"] == ["step-1000", "step-3000", "step-2000"]
    assert figure["layout"]["yaxis"]["title"]["text"] == "accuracy"


def test_the_chart_shows_the_chosen_metric_and_the_select_offers_the_ones_present(dash):
    dash.eval_run("step-1000", "math_eval", accuracy=0.2, avg_loss=2.5)
    dash.eval_run("step-2000", "math_eval", accuracy=0.4, avg_loss=1.25)
    page = dash.page(metric="avg_loss")
    figure = figure_in(page)
    assert [(t["name"], t["x"], t["y"]) for t in figure["data"]] == [
        ("math_eval", ["step-1000", "step-2000"], [2.5, 1.25])]
    assert figure["layout"]["yaxis"]["title"]["text"] == "avg_loss"
    options = re.findall(r'<option value="(\w+)"( selected)?>', page)
    assert options == [("accuracy", ""), ("avg_loss", " selected")]
    # the fragment keeps polling for the metric it shows
    assert re.search(r'hx-get="/dashboard/partials/job-results\?metric=avg_loss"', page)


def test_a_run_without_the_charted_metric_is_left_out_of_the_chart_not_drawn_as_zero(dash):
    dash.eval_run("step-1000", "math_eval", accuracy=0.2, avg_loss=2.0)
    dash.eval_run("step-2000", "math_eval", accuracy=0.4)
    figure = figure_in(dash.page(metric="avg_loss"))
    assert [t["x"] for t in figure["data"]] == [["step-1000"]]


@pytest.mark.parametrize("path", ("/dashboard/jobs", "/dashboard/partials/job-results"))
def test_an_unknown_metric_answers_400_naming_the_field(dash, path):
    response = dash.client.get(path, query_string={"metric": "bleu"})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "metric must be one of accuracy, avg_loss, exact_match, contains, regex" in response.text


def test_the_results_fragment_answers_204_until_another_run_finishes(dash):
    dash.eval_run("step-1000", "math_eval", accuracy=0.2)
    first = dash.client.get("/dashboard/partials/job-results")
    assert first.status_code == 200
    version = version_in(first.text)
    assert dash.client.get("/dashboard/partials/job-results", query_string={"v": version}).status_code == 204
    dash.eval_run("step-2000", "math_eval", accuracy=0.4)
    again = dash.client.get("/dashboard/partials/job-results", query_string={"v": version})
    assert again.status_code == 200
    assert [t["x"] for t in figure_in(again.text)["data"]] == [["step-1000", "step-2000"]]


def test_checkpoint_lines_keep_the_latest_run_of_a_model_per_eval_name():
    runs = [  # newest first, as JobStore.list answers
        {"id": "eval_3", "name": "math", "model_id": "a", "scores": {"accuracy": 0.9}},
        {"id": "eval_2", "name": "math", "model_id": "b", "scores": {"accuracy": 0.5}},
        {"id": "eval_1", "name": "math", "model_id": "a", "scores": {"accuracy": 0.1}},
        {"id": "eval_0", "name": "logic", "model_id": "c", "scores": {"avg_loss": 2.0}},
    ]
    assert checkpoint_lines(runs, "accuracy") == ({"math": [("b", 0.5), ("a", 0.9)]}, ["b", "a"])
    assert checkpoint_lines(runs, "avg_loss") == ({"logic": [("c", 2.0)]}, ["c"])


def test_the_checkpoint_figure_says_so_when_there_is_no_run_to_draw():
    figure = json.loads(charts.checkpoint_metric("accuracy", {}, []))
    assert figure["data"] == []
    assert figure["layout"]["annotations"][0]["text"] == "no finished eval run yet"


# --- shards -----------------------------------------------------------------------------------------

def test_finished_data_gen_jobs_link_their_shards_with_the_example_count(dash):
    job = dash.store.create("data_gen", "step-1000", {"strategy": "self_instruct", "config": {}})["job_id"]
    dash.store.mark_running(job)
    dash.store.finish(job, "done", result={"shards": ["shard_2026-12-01_001.jsonl", "shard_2026-12-01_002.jsonl"],
                                           "examples": 700})
    running = dash.store.create("data_gen", "step-2000", {"strategy": "custom"})["job_id"]
    dash.store.mark_running(running)
    dash.store.update_result(running, {"shards": ["shard_2026-12-01_003.jsonl"]})
    shards = re.search(r'<section class="card" id="job-shards".*?</section>', dash.page(), re.S).group(0)
    row = re.search(rf'<tr data-shards-of="{job}".*?</tr>', shards, re.S).group(0)
    assert re.findall(r'<a href="([^"]+)" download', row) == ["/dashboard/shards/shard_2026-12-01_001.jsonl",
                                                              "/dashboard/shards/shard_2026-12-01_002.jsonl"]
    assert "<td>700</td>" in row and "self_instruct" in row
    assert running not in shards  # a running job's shards are not final yet


def test_a_shard_name_with_a_path_in_it_is_shown_but_never_linked(dash):
    job = dash.store.create("data_gen", "step-1000", {"strategy": "custom"})["job_id"]
    dash.store.mark_running(job)
    dash.store.finish(job, "done", result={"shards": ["../db.sqlite"]})
    shards = re.search(r'<section class="card" id="job-shards".*?</section>', dash.page(), re.S).group(0)
    assert "../db.sqlite" in shards and "/shards/.." not in shards
    assert "<td>—</td>" in re.search(rf'<tr data-shards-of="{job}".*?</tr>', shards, re.S).group(0)


def test_a_shard_downloads_through_the_dashboard_login_when_an_api_key_is_set(make_app):
    app = make_app(api_key="k3y")
    shards_dir = svc(app).jobs.paths.shards_dir
    (shards_dir / "shard_2026-12-01_001.jsonl").write_text('{"instruction": "a"}\n')
    client = app.test_client()
    assert client.get("/shards/shard_2026-12-01_001.jsonl").status_code == 401  # the API needs the key
    login_page = client.get("/dashboard/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    assert client.post("/dashboard/login", data={"api_key": "k3y", "csrf_token": token}).status_code in (302, 303)
    download = client.get("/dashboard/shards/shard_2026-12-01_001.jsonl")
    assert download.status_code == 200 and download.get_data(as_text=True) == '{"instruction": "a"}\n'
    assert client.get("/dashboard/shards/db.sqlite").status_code == 400
    assert client.get("/dashboard/shards/shard_2026-12-01_009.jsonl").status_code == 404
