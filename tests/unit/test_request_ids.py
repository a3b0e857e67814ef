"""Request ids: X-Request-ID taken from the caller or made, on every response, in every log line of the request,
and the same id the engine books a generation under."""
from __future__ import annotations

import logging
import threading
import uuid

import pytest
from flask import Response
from flask import stream_with_context

from ollama_server.api import client_gone
from ollama_server.api.request_context import note_model
from ollama_server.log_format import JsonLineFormatter
from ollama_server.services import EXTENSION_KEY
from tests.log_capture import Captured
from tests.log_capture import on_root

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
GUARD_S = 30.0  # failure guard only


@pytest.fixture
def captured():
    handler = Captured(JsonLineFormatter())
    with on_root(handler, level=logging.DEBUG):
        yield handler


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def test_the_callers_x_request_id_is_echoed_on_the_response(client):
    response = client.get("/health", headers={"X-Request-ID": "trace-abc.1:2"})
    assert response.headers["X-Request-ID"] == "trace-abc.1:2"


def test_the_header_is_read_in_any_case(client):
    assert client.get("/api/tags", headers={"x-request-id": "lower-1"}).headers["X-Request-ID"] == "lower-1"


def test_an_id_is_made_when_the_caller_sends_none_and_differs_per_request(client):
    first, second = (client.get("/health").headers["X-Request-ID"] for _ in range(2))
    assert is_uuid(first) and is_uuid(second) and first != second


def test_an_invalid_id_gets_a_fresh_one_where_the_route_does_not_need_it(client):
    response = client.get("/health", headers={"X-Request-ID": "not valid: spaces"})
    assert response.status_code == 200 and is_uuid(response.headers["X-Request-ID"])


def test_an_invalid_id_on_a_generation_route_is_a_400_naming_the_header(client):
    response = client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "x" * 129})
    assert response.status_code == 400 and "X-Request-Id" in response.get_json()["error"]["message"]
    assert is_uuid(response.headers["X-Request-ID"])


def test_refused_requests_carry_an_id_too(make_app):
    response = make_app(api_key="k-refusal-test").test_client().get("/v1/models", headers={"X-Request-ID": "r-401"})
    assert response.status_code == 401 and response.headers["X-Request-ID"] == "r-401"


def test_the_log_lines_of_a_request_carry_the_callers_id_and_the_engine_books_it(make_app, fake_backend, captured):
    app = make_app()
    fake_backend.enqueue("hello")
    response = app.test_client().post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "caller-7"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "caller-7"
    loaded = captured.with_message("loaded tiny:latest")  # the pool loads the model inside the request
    assert [line["request_id"] for line in loaded] == ["caller-7"]
    assert loaded[0]["extra"] == {"api": "openai", "endpoint": "/v1/chat/completions", "remote_addr": "127.0.0.1"}
    generation = app.extensions[EXTENSION_KEY].engine.get_request("caller-7")
    assert generation is not None and generation.wait_finished(GUARD_S)


def test_without_a_header_the_engines_id_is_the_log_and_response_id(make_app, fake_backend, captured):
    app = make_app()
    fake_backend.enqueue("hello")
    response = app.test_client().post("/v1/chat/completions", json=CHAT)
    body = response.get_json()
    assert response.headers["X-Request-ID"] == body["id"] and body["id"].startswith("chatcmpl-")
    assert [line["request_id"] for line in captured.with_message("loaded tiny:latest")] == [body["id"]]
    generation = app.extensions[EXTENSION_KEY].engine.get_request(body["id"])
    assert generation is not None and generation.wait_finished(GUARD_S)
    records, _ = app.extensions[EXTENSION_KEY].engine.records.since(0)
    assert [record.request_id for record in records] == [body["id"]]


def test_a_line_written_before_the_route_books_its_own_id_is_joined_to_it(make_app, captured):
    app = make_app()
    probe = logging.getLogger("ollama_server.tests.id_probe")

    def view():
        probe.info("translating")  # as Ollama warns about an ignored option before booking the request
        booked = client_gone.request_id("engine-generated-1")  # what the generation routes call
        probe.info("booked")
        return booked

    app.add_url_rule("/probe/id", "probe_id", view)
    response = app.test_client().get("/probe/id")
    assert response.get_data(as_text=True) == response.headers["X-Request-ID"] == "engine-generated-1"
    early, late = (line for line in captured.parsed() if line["logger"] == probe.name)
    assert is_uuid(early["request_id"]) and late["request_id"] == "engine-generated-1"
    assert late["extra"]["earlier_request_id"] == early["request_id"]


def test_a_route_names_its_model_for_the_lines_that_follow(make_app, captured):
    app = make_app()
    probe = logging.getLogger("ollama_server.tests.model_probe")

    def view():
        probe.info("before")
        note_model("tiny:latest")
        probe.info("after")
        return "ok"

    app.add_url_rule("/probe/model", "probe_model", view)
    app.test_client().get("/probe/model")
    assert [line["extra"].get("model") for line in captured.parsed()
            if line["logger"] == probe.name] == [None, "tiny:latest"]


def test_lines_written_while_a_body_streams_keep_the_request_context(make_app, captured):
    app = make_app()
    probe = logging.getLogger("ollama_server.tests.stream_probe")

    def pieces(label: str):
        for number in range(2):
            probe.info("%s piece %d", label, number)
            yield f"{label}{number}\n"

    # A route of the test's own: real views log little while they stream. One body plain, one with the context.
    app.add_url_rule("/probe/plain", "probe_plain", lambda: Response(pieces("plain"), mimetype="text/plain"))
    app.add_url_rule("/probe/kept", "probe_kept",
                     lambda: Response(stream_with_context(pieces("kept")), mimetype="text/plain"))
    client = app.test_client()
    for path, label in (("/probe/plain", "plain"), ("/probe/kept", "kept")):
        response = client.get(path, headers={"X-Request-ID": f"stream-{label}"}, buffered=False)
        assert response.get_data(as_text=True) == f"{label}0\n{label}1\n"
        response.close()
        lines = captured.with_message(f"{label} piece")
        assert [(line["request_id"], line["extra"]["endpoint"]) for line in lines] == [
            (f"stream-{label}", path), (f"stream-{label}", path)]
    probe.info("after the streams")
    assert captured.with_message("after the streams")[0]["request_id"] is None


def test_closing_a_streamed_body_early_closes_the_routes_generator(make_app):
    app = make_app()
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield "x\n"
        finally:
            closed.set()

    app.add_url_rule("/probe/endless", "probe_endless", lambda: Response(endless(), mimetype="text/plain"))
    response = app.test_client().get("/probe/endless", buffered=False)
    assert next(response.response) == b"x\n"
    response.close()
    assert closed.wait(GUARD_S)


def test_a_line_after_the_request_carries_no_id(client, captured):
    client.get("/health", headers={"X-Request-ID": "gone-1"})
    logging.getLogger("ollama_server.tests").info("between requests")
    assert captured.with_message("between requests")[0]["request_id"] is None


def test_the_dashboards_actions_log_as_the_dashboard(client, captured):
    assert client.post("/api/dashboard/configure", json={"batch_size": 64},
                       headers={"X-Request-ID": "dash-1"}).status_code == 200
    [applied] = captured.with_message("runtime configuration")
    assert applied["request_id"] == "dash-1"
    assert applied["extra"] == {"api": "dashboard", "endpoint": "/api/dashboard/configure", "remote_addr": "127.0.0.1"}
