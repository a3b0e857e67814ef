"""Requests refused before the engine leave one rejected record with their HTTP status; the engine's are not doubled."""
from __future__ import annotations

import threading
import time

from ollama_server.services import EXTENSION_KEY

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


def records_of(app):
    records, _ = app.extensions[EXTENSION_KEY].engine.records.since(0)
    return records


def only_record(app):
    records = records_of(app)
    assert len(records) == 1, records
    return records[0]


def test_malformed_json_on_openai_chat_is_one_openai_400_record(make_app):
    app = make_app()
    response = app.test_client().post("/v1/chat/completions", data=b'{"model": "tiny", ',
                                      content_type="application/json")
    assert response.status_code == 400
    record = only_record(app)
    assert (record.outcome, record.dialect, record.endpoint, record.http_status, record.error_kind) == \
        ("rejected", "openai", "/v1/chat/completions", 400, "invalid_request")
    assert (record.model, record.prompt_tokens, record.completion_tokens, record.queue_s, record.ttft_s) == \
        ("", 0, 0, None, None)
    assert record.duration_s >= 0


def test_a_bad_ollama_body_is_an_ollama_400_record_naming_the_model(make_app):
    app = make_app()
    response = app.test_client().post("/api/chat", json={"model": "tiny", "messages": "not a list"})
    assert response.status_code == 400
    record = only_record(app)
    assert (record.dialect, record.endpoint, record.model, record.http_status) == ("ollama", "/api/chat", "tiny", 400)


def test_a_tgi_validation_error_is_a_tgi_422_record(make_app):
    app = make_app()
    response = app.test_client().post("/generate", json={"inputs": "x", "parameters": {"temperature": 0}},
                                      headers={"X-Request-Id": "mine-1"})
    assert response.status_code == 422
    record = only_record(app)
    assert (record.dialect, record.endpoint, record.http_status, record.error_kind, record.request_id) == \
        ("tgi", "/generate", 422, "invalid_request", "mine-1")


def test_a_missing_api_key_is_a_401_record(make_app):
    app = make_app(api_key="s3cret")
    response = app.test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    record = only_record(app)
    assert (record.dialect, record.http_status, record.error_kind, record.model) == \
        ("openai", 401, "unauthorized", "tiny")
    assert record.duration_s > 0  # the clock started before the API-key check


def test_a_foreign_origin_is_a_403_record(make_app):
    app = make_app()
    response = app.test_client().post("/api/generate", json={"model": "tiny", "prompt": "x"},
                                      headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    record = only_record(app)
    assert (record.dialect, record.http_status, record.error_kind) == ("ollama", 403, "forbidden")
    assert record.duration_s > 0  # the clock started before the Host and Origin checks


def test_a_body_over_the_limit_is_a_413_record_without_reading_the_body(make_app):
    app = make_app(max_request_bytes=2048)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert app.test_client().post("/v1/chat/completions", json=body).status_code == 413
    record = only_record(app)
    assert (record.dialect, record.http_status, record.error_kind, record.model) == ("openai", 413, "too_large", "")


def test_a_text_plain_body_is_a_415_record(make_app):
    app = make_app()
    response = app.test_client().post("/api/generate", data='{"model": "tiny", "prompt": "x"}',
                                      content_type="text/plain")
    assert response.status_code == 415
    record = only_record(app)
    assert (record.dialect, record.http_status, record.error_kind) == ("ollama", 415, "unsupported_media_type")


def test_an_unknown_model_leaves_only_the_engines_record(make_app, fake_backend):
    app = make_app()
    response = app.test_client().post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert response.status_code == 404
    record = only_record(app)
    assert (record.outcome, record.error_kind, record.http_status, record.model) == \
        ("rejected", "not_found", None, "nope")


def test_a_successful_generation_leaves_one_done_record_and_no_refusal(make_app, fake_backend):
    app = make_app()
    fake_backend.enqueue("hello")
    response = app.test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    generation = app.extensions[EXTENSION_KEY].engine.get_request(response.headers["X-Request-Id"])
    assert generation.wait_finished(10)
    record = only_record(app)
    assert (record.outcome, record.http_status, record.dialect) == ("done", None, "openai")


def test_a_parametrised_route_is_one_endpoint(make_app):
    app = make_app()
    client = app.test_client()
    assert client.get("/api/progress/abc").status_code == 404
    assert client.get("/api/progress/def").status_code == 404
    assert [r.endpoint for r in records_of(app)] == ["/api/progress/<request_id>"] * 2


def test_an_openai_route_under_api_is_openai(make_app):
    app = make_app()
    assert app.test_client().post("/api/chat/completions", json={"messages": []}).status_code == 400
    assert only_record(app).dialect == "openai"


def test_vllm_and_unknown_routes_take_the_dialect_of_their_path(make_app):
    app = make_app()
    client = app.test_client()
    assert client.post("/tokenize", json={"model": "tiny"}).status_code == 400
    assert client.get("/v1/nowhere").status_code == 404
    assert client.put("/").status_code == 405
    assert [(r.dialect, r.endpoint, r.http_status) for r in records_of(app)] == \
        [("vllm", "/tokenize", 400), ("openai", "/v1/nowhere", 404), ("ollama", "/", 405)]


def test_an_unexpected_exception_in_submit_is_a_500_record(make_app, monkeypatch):
    app = make_app()

    def broken_submit(request, request_id=None):
        raise RuntimeError("boom")  # not an EngineError: the engine records nothing of it
    monkeypatch.setattr(app.extensions[EXTENSION_KEY].engine, "submit", broken_submit)
    response = app.test_client().post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 500
    record = only_record(app)
    assert (record.dialect, record.http_status, record.error_kind, record.model) == \
        ("openai", 500, "http_500", "tiny")


def test_health_503_is_no_refusal(make_app, fake_backend):
    app = make_app()

    def broken_load(path, options):
        raise RuntimeError("bad magic")
    fake_backend.load = broken_load
    services = app.extensions[EXTENSION_KEY]
    services.start()  # the warm-up fails: /health says 503 while loading and after
    client = app.test_client()
    try:
        deadline = time.monotonic() + 10
        while client.get("/health").get_json()["status"] == "loading" and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        assert client.get("/health").status_code == 503
        assert records_of(app) == []
    finally:
        services.close()
