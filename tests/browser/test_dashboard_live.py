"""The dashboard while things happen, in a real Chromium: polled fragments follow the data, a pull shows its
progress, a stream's progress arrives over the websocket, a preset is applied without a restart while a stream
keeps running, a rollback restores the old values, and a bad value is shown next to its field."""
from __future__ import annotations

import threading

import ollama
import openai
import pytest
import requests

from tests.browser.support import screenshot
from tests.browser.support import wait_until
from tests.fakes.file_server import FileServer
from tests.fakes.file_server import gguf_bytes

MODEL = "gemma3:270m"


def running_value(page, field: str) -> str:
    return page.locator(f"#config-status [data-field={field}]").inner_text()


class Stream:
    """A streaming chat completion read on its own thread; keeps the iterator so the connection stays open."""

    def __init__(self, url: str, max_tokens: int):
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        self.pieces: list[str] = []
        self.finish_reason = None
        self.usage = None
        self.error = None
        self.started = threading.Event()
        self.stream = self.client.chat.completions.create(
            model=MODEL, max_tokens=max_tokens, stream=True, temperature=0,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}])
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for chunk in self.stream:
                if chunk.choices:
                    self.pieces.append(chunk.choices[0].delta.content or "")
                    self.finish_reason = chunk.choices[0].finish_reason or self.finish_reason
                    self.started.set()
                if chunk.usage is not None:
                    self.usage = chunk.usage
        except Exception as exc:  # reported by the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=300)
        assert not self.thread.is_alive(), "the stream never ended"


def test_a_polled_fragment_changes_after_the_data_changes(fake_gpu_server, page):
    page.goto(fake_gpu_server.url + "/dashboard/apis")
    row = page.locator("[data-endpoint='ollama /api/generate'] [data-testid=requests]")
    before = int(row.inner_text()) if row.count() else 0
    ollama.Client(host=fake_gpu_server.url).generate(model=MODEL, prompt="Hi", options={"num_predict": 4})
    # No reload: the table's poll brings the new count once the collector has drained the record.
    wait_until(lambda: row.count() and int(row.inner_text()) > before, timeout=60,
               message="the endpoints table shows the new /api/generate request")


def test_a_running_stream_shows_its_progress_over_the_websocket(fake_gpu_server, page):
    page.goto(fake_gpu_server.url + "/dashboard/")
    stream = Stream(fake_gpu_server.url, max_tokens=60)
    progress = page.locator("#active-requests [data-testid=progress-text]")
    seen = set()

    def two_values():
        if progress.count():
            seen.add(progress.first.inner_text())
        return len(seen) >= 2
    wait_until(two_values, timeout=120, message="the progress text moved while the stream ran")
    stream.join()
    assert stream.error is None and stream.finish_reason == "length"
    wait_until(lambda: page.locator("#active-requests").inner_text().startswith("No request"), timeout=30,
               message="the finished request left the table")


def test_a_pull_shows_its_progress_then_the_model(fake_gpu_server, page):
    server = FileServer(gguf_bytes(3 * 1024 * 1024))
    server.stall_after = 1024 * 1024  # a third of the file, then the server waits: the bar stops at ~33 %
    try:
        page.goto(fake_gpu_server.url + "/dashboard/models")
        page.fill("#pull-source", server.url + "/model.gguf")
        page.fill("#pull-name", "dash-pulled:latest")
        page.click("#pulls button.primary")
        percent = page.locator("[data-pull] [data-testid=pull-percent]").first
        wait_until(lambda: percent.count() and 20 <= int(percent.inner_text().split()[0]) < 100, timeout=60,
                   message="the pull's progress bar part-way")
        screenshot(page, "models-pull")
        server.release.set()
        wait_until(lambda: page.locator("[data-pull][data-status=success]").count(), timeout=60,
                   message="the pull finished")
        wait_until(lambda: page.locator("tr[data-model='dash-pulled:latest']").count(), timeout=30,
                   message="the pulled model listed")
        page.on("dialog", lambda dialog: dialog.accept())
        page.locator("tr[data-model='dash-pulled:latest'] button.danger").click()
        wait_until(lambda: not page.locator("tr[data-model='dash-pulled:latest']").count(), timeout=30,
                   message="the deleted model gone")
    finally:
        server.release.set()
        server.close()


def test_a_bad_value_is_shown_next_to_its_field_and_nothing_changes(fake_gpu_server, page):
    page.allow_http_error("/dashboard/actions/config/", 422)
    page.goto(fake_gpu_server.url + "/dashboard/config")
    before = running_value(page, "gpu_layers")
    page.fill("#cfg-gpu_layers", "abc")
    page.click("#apply-config")
    message = page.locator("[data-error-for=gpu_layers]")
    message.wait_for()
    assert "integer" in message.inner_text()
    assert page.locator("#cfg-gpu_layers").get_attribute("aria-invalid") == "true"
    assert running_value(page, "gpu_layers") == before
    config = requests.get(fake_gpu_server.url + "/api/dashboard/config", timeout=10).json()["config"]
    assert str(config["gpu_layers"]) == before


def test_a_preset_applies_without_restart_while_a_stream_runs_and_rollback_restores(fake_gpu_server, page):
    page.goto(fake_gpu_server.url + "/dashboard/config")
    assert running_value(page, "context_size") == "1024"
    # Long enough to outlast the preview and the apply by seconds even at the model's full 45 tokens/s.
    stream = Stream(fake_gpu_server.url, max_tokens=240)
    assert stream.started.wait(120), "the stream produced no token"

    page.click("button[data-preset=conservative]")
    wait_until(lambda: page.locator("#cfg-context_size").input_value() == "2048", timeout=30,
               message="the preset's values in the form")
    assert page.locator("[data-testid=distribution] tbody tr").count() >= 4  # GPU rows of the preview
    assert running_value(page, "context_size") == "1024"  # previewed, not applied
    page.click("#apply-config")
    page.locator("[data-testid=config-message]", has_text="Applied version").wait_for()
    assert stream.finish_reason is None, "the stream ended before the new configuration was applied"

    stream.join()
    assert stream.error is None and stream.finish_reason == "length"
    assert stream.usage.completion_tokens == 240  # the whole reply, on the old model, through the reload
    wait_until(lambda: running_value(page, "context_size") == "2048"
               and page.locator("[data-testid=reload-state]").get_attribute("data-state") == "idle",
               timeout=120, message="the page shows the new values and the reload done")
    assert running_value(page, "parallel_slots") == "1"
    ps = requests.get(fake_gpu_server.url + "/api/ps", timeout=10).json()["models"]
    assert [m["context_length"] for m in ps if m["name"] == MODEL] == [2048]  # reloaded with the new context
    reply = ollama.Client(host=fake_gpu_server.url).generate(model=MODEL, prompt="Hi", options={"num_predict": 4})
    assert reply.done
    screenshot(page, "config")

    # The newest version is the preset; the one before it holds the startup values.
    previous = page.locator("#config-versions tr[data-version] button[data-rollback]").first
    previous.click()
    page.locator("[data-testid=config-message]", has_text="Rolled back").wait_for()
    wait_until(lambda: running_value(page, "context_size") == "1024"
               and running_value(page, "parallel_slots") == "2"
               and page.locator("[data-testid=reload-state]").get_attribute("data-state") == "idle",
               timeout=120, message="the old values back after the rollback")
    ps = requests.get(fake_gpu_server.url + "/api/ps", timeout=10).json()["models"]
    assert [m["context_length"] for m in ps if m["name"] == MODEL] == [1024]


def test_the_benchmark_button_runs_the_fixed_benchmark_and_keeps_its_result(fake_gpu_server, page):
    page.goto(fake_gpu_server.url + "/dashboard/models")
    row = page.locator(f"tr[data-model='{MODEL}']")
    row.locator("button", has_text="Benchmark").click()
    result = row.locator("[data-testid=benchmark]")
    wait_until(lambda: "decode" in result.inner_text(), timeout=180, message="the benchmark's result in the row")
    text = result.inner_text()
    assert "prompt" in text and "TTFT" in text and "ago" in text
    kept = requests.get(f"{fake_gpu_server.url}/api/dashboard/models/{MODEL}/benchmarks", timeout=10).json()
    assert kept["benchmarks"][0]["decode_tokens_per_second"] > 0


def test_the_cost_calculator_recomputes_when_a_field_changes(fake_gpu_server, page):
    page.goto(fake_gpu_server.url + "/dashboard/optimization")
    monthly = page.locator("[data-testid=monthly-cost]")
    before = monthly.inner_text()
    page.fill("#cost-electricity_price_per_kwh", "0.90")
    page.locator("#cost-electricity_price_per_kwh").dispatch_event("change")
    wait_until(lambda: monthly.inner_text() != before, timeout=30, message="a new monthly cost")
    assert float(monthly.inner_text()) > float(before)  # dearer power, dearer month
