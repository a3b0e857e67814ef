"""Request aggregates: draining the RequestLog by sequence, the window, percentiles, the API-health shape."""
from __future__ import annotations

import pytest

from ollama_server.engine.records import RequestLog
from ollama_server.monitoring.requests_agg import RequestAggregator
from ollama_server.monitoring.requests_agg import endpoint_status
from ollama_server.monitoring.requests_agg import iso_utc
from ollama_server.monitoring.requests_agg import overall_health
from ollama_server.monitoring.requests_agg import percentile

NOW = 1_749_328_200.0  # 2025-06-07T20:30:00Z


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(log, outcome="done", dialect="openai", endpoint="/v1/chat/completions", model="phi4:latest",
           duration=1.0, ttft=0.2, queue=0.05, prompt=10, completion=20, http_status=None):
    return log.append(request_id="r", dialect=dialect, endpoint=endpoint, model=model, outcome=outcome,
                      error_kind=None if outcome == "done" else "x", finish_reason="stop", prompt_tokens=prompt,
                      completion_tokens=completion, cached_tokens=0, queue_s=queue, ttft_s=ttft, duration_s=duration,
                      http_status=http_status)


@pytest.fixture
def setup():
    clock = Clock()
    return clock, RequestLog(clock=clock), RequestAggregator(window_s=60, clock=clock)


@pytest.mark.parametrize("values, q, expected", [([], 50, None), ([3.0], 95, 3.0), ([1, 2, 3, 4], 50, 2.5),
                                                 ([1, 2, 3, 4, 5], 95, 4.8), (list(range(1, 101)), 99, 99.01),
                                                 ([5, 1, 3], 0, 1), ([5, 1, 3], 100, 5)])
def test_percentile_interpolates_between_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_it_folds_one_group_by_hand(setup):
    clock, log, agg = setup
    for duration, ttft in [(1.0, 0.1), (2.0, 0.2), (3.0, 0.3), (4.0, 0.4)]:
        record(log, duration=duration, ttft=ttft, completion=30)
    record(log, outcome="failed", duration=5.0, ttft=None, completion=0, queue=None)
    record(log, outcome="cancelled", duration=0.5, ttft=0.1, completion=5)
    assert agg.drain(log) == 6
    (one,) = agg.aggregates()
    assert (one.dialect, one.endpoint, one.model, one.count) == ("openai", "/v1/chat/completions", "phi4:latest", 6)
    assert one.outcomes == {"done": 4, "failed": 1, "cancelled": 1, "rejected": 0}
    assert (one.successful, one.failed) == (4, 1) and one.success_ratio == pytest.approx(0.8)
    assert one.latency_avg_s == pytest.approx(15.0 / 5)  # cancelled is outside: 1+2+3+4+5
    assert one.latency_p50_s == pytest.approx(3.0) and one.latency_p95_s == pytest.approx(4.8)
    assert one.latency_p99_s == pytest.approx(4.96)
    assert one.ttft_p50_s == pytest.approx(0.2)  # 0.1 0.1 0.2 0.3 0.4
    assert one.queue_avg_s == pytest.approx(0.05)
    assert (one.prompt_tokens, one.completion_tokens) == (60, 125)
    assert one.tokens_per_second == pytest.approx(125 / 10.5)  # 4×30 + 5 tokens over 1+2+3+4+0.5 s
    assert one.decode_tokens_per_second == pytest.approx(125 / (10.5 - 1.1))
    assert one.last_finished_at == NOW


def test_it_groups_by_dialect_endpoint_and_model(setup):
    clock, log, agg = setup
    record(log)
    record(log, model="llama3:8b")
    record(log, dialect="ollama", endpoint="/api/chat")
    agg.drain(log)
    keys = [(a.dialect, a.endpoint, a.model) for a in agg.aggregates()]
    assert keys == [("ollama", "/api/chat", "phi4:latest"), ("openai", "/v1/chat/completions", "llama3:8b"),
                    ("openai", "/v1/chat/completions", "phi4:latest")]


def test_it_drains_by_sequence_only_once_and_counts_what_the_log_dropped():
    clock = Clock()
    log = RequestLog(capacity=3, clock=clock)
    agg = RequestAggregator(clock=clock)
    record(log)
    assert agg.drain(log) == 1 and agg.drain(log) == 0
    for _ in range(5):
        record(log)  # seq 2..6; the log keeps 4..6
    assert agg.drain(log) == 3 and agg.missed == 2 and agg.last_seq == 6
    assert agg.add(log.since(0)[0]) == 0  # already seen
    assert len(agg.records()) == 4


def test_the_window_forgets_old_records_but_remembers_the_last_request_time(setup):
    clock, log, agg = setup
    record(log)
    agg.drain(log)
    clock.now += 61
    assert agg.aggregates() == []
    health = agg.api_health()
    (row,) = health["endpoints"]
    assert row["status"] == "idle" and row["total_requests"] == 0 and row["success_rate"] is None
    assert row["last_request_time"] == "2025-06-07T20:30:00Z"
    assert health["overallHealth"] == "healthy"


def test_the_seeds_api_health_shape(setup):
    clock, log, agg = setup
    for _ in range(199):
        record(log, duration=0.25)
    record(log, outcome="failed", duration=0.25)
    record(log, outcome="rejected", http_status=400, duration=0.001)  # a client error: outside both counts
    record(log, outcome="rejected", http_status=429, duration=0.001)  # overload: a failure
    agg.drain(log)
    clock.now += 15
    health = agg.api_health({("ollama", "/api/generate"): "Ollama API"})
    assert set(health) >= {"endpoints", "timestamp", "overallHealth"}
    assert health["timestamp"] == "2025-06-07T20:30:15Z"
    idle, openai = health["endpoints"]
    assert idle == {"endpoint": "Ollama API", "path": "/api/generate", "total_requests": 0,
                    "successful_requests": 0, "failed_requests": 0, "average_response_time": None,
                    "success_rate": None, "last_request_time": None, "status": "idle", "cancelled_requests": 0,
                    "client_errors": 0}
    assert openai["endpoint"] == "OpenAI API" and openai["path"] == "/v1/chat/completions"
    assert (openai["total_requests"], openai["successful_requests"], openai["failed_requests"]) == (201, 199, 2)
    assert openai["success_rate"] == 99.0  # 199/201, in %, one decimal
    assert openai["average_response_time"] == pytest.approx(round((200 * 0.25 + 0.001) / 201 * 1000, 1))
    assert openai["client_errors"] == 1 and openai["status"] == "healthy"
    assert openai["last_request_time"] == "2025-06-07T20:30:00Z"
    assert health["overallHealth"] == "healthy"


@pytest.mark.parametrize("success, average_ms, status", [
    (None, None, "idle"), (100.0, 245.3, "healthy"), (95.0, 10000.0, "healthy"), (94.9, 100.0, "degraded"),
    (100.0, 10000.1, "degraded"), (85.0, 100.0, "degraded"), (84.9, 100.0, "unhealthy"),
    (100.0, 30000.0, "unhealthy"),
])
def test_endpoint_status_thresholds(success, average_ms, status):
    assert endpoint_status(success, average_ms) == status


@pytest.mark.parametrize("statuses, overall", [([], "healthy"), (["idle"], "healthy"),
                                               (["healthy", "idle"], "healthy"), (["healthy", "degraded"], "degraded"),
                                               (["degraded", "unhealthy", "healthy"], "unhealthy")])
def test_overall_health_is_the_worst_endpoint(statuses, overall):
    assert overall_health(statuses) == overall


def test_a_failing_endpoint_makes_the_overall_health_unhealthy(setup):
    clock, log, agg = setup
    record(log, dialect="tgi", endpoint="/generate")
    record(log, dialect="tgi", endpoint="/generate", outcome="failed")
    record(log)
    agg.drain(log)
    health = agg.api_health()
    assert [row["status"] for row in health["endpoints"]] == ["healthy", "unhealthy"]
    assert health["endpoints"][1]["endpoint"] == "TGI API"
    assert health["overallHealth"] == "unhealthy"


def test_iso_utc():
    assert iso_utc(1_749_328_185.0) == "2025-06-07T20:29:45Z" and iso_utc(None) is None
