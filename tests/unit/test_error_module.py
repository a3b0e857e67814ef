"""The error module: per-dialect status tables and bodies, HTTP/engine readings, install on every blueprint."""
from __future__ import annotations

import pytest
from flask import Flask
from flask import g
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import ServiceUnavailable

from ollama_server.api.errors import ApiError
from ollama_server.api.errors import dialects as d
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import ModelNotFoundError

STATUSES = [  # (dialect, kind, status)
    (d.OPENAI, "invalid_request", 400), (d.OPENAI, "not_found", 404), (d.OPENAI, "busy", 429),
    (d.OPENAI, "unavailable", 503), (d.OPENAI, "timeout", 408), (d.OPENAI, "no_such_kind", 500),
    (d.VLLM, "invalid_request", 400), (d.VLLM, "busy", 429), (d.VLLM, "not_implemented", 501),
    (d.OLLAMA, "busy", 503), (d.OLLAMA, "not_found", 404), (d.OLLAMA, "too_large", 413),
    (d.OLLAMA, "forbidden", 500),
    (d.PLAIN, "busy", 429), (d.PLAIN, "invalid_request", 400), (d.PLAIN, "unauthorized", 401),
    (d.TGI, "invalid_request", 422), (d.TGI, "not_found", 422), (d.TGI, "too_large", 413),
    (d.TGI, "busy", 429), (d.TGI, "unauthorized", 401), (d.TGI, "unavailable", 503),
    (d.TGI, "internal", 424), (d.TGI, "load_failed", 424), (d.TGI, "no_such_kind", 424),
]


@pytest.mark.parametrize(("dialect", "kind", "status"), STATUSES, ids=lambda v: getattr(v, "name", None))
def test_status_per_kind_per_dialect(dialect, kind, status):
    assert dialect.status_of(ApiError(kind, "m")) == status
    assert dialect.status_of(ApiError(kind, "m", status=418)) == 418  # the error's own status wins


BODIES = [  # (dialect, error, body)
    (d.OPENAI, ApiError("not_found", "no model", param="model", code="model_not_found"),
     {"error": {"message": "no model", "type": "not_found_error", "param": "model", "code": "model_not_found"}}),
    (d.OPENAI, ApiError("busy", "full"), {"error": {"message": "full", "type": "rate_limit_error", "param": None,
                                                    "code": None}}),
    (d.OPENAI, ApiError("load_failed", "x"), {"error": {"message": "x", "type": "api_error", "param": None,
                                                        "code": None}}),
    (d.VLLM, ApiError("invalid_request", "bad", param="prompt"),
     {"error": {"message": "bad", "type": "BadRequestError", "param": "prompt", "code": 400}}),
    (d.VLLM, ApiError("busy", "full"), {"error": {"message": "full", "type": "TooManyRequestsError", "param": None,
                                                  "code": 429}}),
    (d.VLLM, ApiError("internal", "x"), {"error": {"message": "x", "type": "InternalServerError", "param": None,
                                                   "code": 500}}),
    (d.OLLAMA, ApiError("not_found", "model 'x' not found", param="model"), {"error": "model 'x' not found"}),
    (d.PLAIN, ApiError("invalid_request", "name is required"), {"error": "name is required"}),
    (d.TGI, ApiError("invalid_request", "bad"), {"error": "bad", "error_type": "validation"}),
    (d.TGI, ApiError("busy", "queue full"), {"error": "Model is overloaded", "error_type": "overloaded"}),
    (d.TGI, ApiError("internal", "boom"), {"error": "boom", "error_type": "generation"}),
]


@pytest.mark.parametrize(("dialect", "error", "body"), BODIES, ids=lambda v: getattr(v, "name", None))
def test_body_per_dialect(dialect, error, body):
    assert dialect.body(error, dialect.status_of(error)) == body


HTTP = [  # (dialect, werkzeug error, kind, status)
    (d.OPENAI, NotFound(), "not_found", 404), (d.OPENAI, MethodNotAllowed(), "method_not_allowed", 405),
    (d.OLLAMA, RequestEntityTooLarge(), "too_large", 413), (d.VLLM, ServiceUnavailable(), "invalid_request", 503),
    (d.TGI, NotFound(), "invalid_request", 404), (d.TGI, MethodNotAllowed(), "invalid_request", 405),
    (d.TGI, ServiceUnavailable(), "internal", 503),
]


@pytest.mark.parametrize(("dialect", "exc", "kind", "status"), HTTP, ids=lambda v: getattr(v, "name", None))
def test_http_errors_keep_their_status(dialect, exc, kind, status):
    error = dialect.from_http(exc)
    assert (error.kind, error.status, error.message) == (kind, status, exc.description)
    assert dialect.status_of(error) == status


def test_tgi_http_error_type_follows_the_status():
    assert d.TGI.body(d.TGI.from_http(MethodNotAllowed()), 405)["error_type"] == "validation"
    assert d.TGI.body(d.TGI.from_http(ServiceUnavailable()), 503)["error_type"] == "generation"


@pytest.mark.parametrize("dialect", [d.OPENAI, d.VLLM, d.OLLAMA, d.PLAIN], ids=lambda v: v.name)
def test_engine_errors_keep_kind_param_code_and_retry_after(dialect):
    error = dialect.from_engine(ModelNotFoundError("x"))
    assert (error.kind, error.param, error.code, error.headers) == ("not_found", "model", "model_not_found", {})
    assert dialect.from_engine(BusyError(retry_after_s=7)).headers == {"Retry-After": "7"}


def test_tgi_engine_errors_use_tgi_wording_and_always_retry_after_when_busy():
    too_long = ContextLengthError("too long", prompt_tokens=600, context_length=512, max_tokens=None)
    assert d.TGI.from_engine(too_long).message == "`inputs` must have less than 512 tokens. Given: 600"
    busy_without_delay = EngineError("busy")
    busy_without_delay.kind = "busy"
    assert d.TGI.from_engine(busy_without_delay).headers == {"Retry-After": "1"}
    assert d.TGI.from_engine(BusyError(retry_after_s=3)).headers == {"Retry-After": "3"}


def test_render_headers_per_dialect():
    busy = ApiError("busy", "full", headers={"Retry-After": "2"})
    with Flask(__name__).test_request_context("/api/chat"):
        g.ollama_request_id = "req-1"
        assert d.OLLAMA.render(busy).headers["X-Request-Id"] == "req-1"
        assert d.OLLAMA.render(busy).get_data(as_text=True) == '{"error":"full"}'
        assert d.OPENAI.render(busy).headers["Retry-After"] == "2"
        assert "Retry-After" not in d.VLLM.render(busy).headers  # vLLM never sent it
        assert "X-Request-Id" not in d.PLAIN.render(busy).headers


def test_html_dialect_is_a_page_renderer_away():
    html = d.html_dialect(lambda error, status: f"<h1>{status}</h1><p>{error.message}</p>")
    with Flask(__name__).test_request_context("/dashboard/"):
        response = html.render(ApiError("not_found", "no such page"))
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert response.get_data(as_text=True) == "<h1>404</h1><p>no such page</p>"


@pytest.mark.parametrize(("path", "dialect"), [("/v1/nope", d.OPENAI), ("/api/nope", d.PLAIN), ("/v1", d.PLAIN),
                                               ("/generate", d.PLAIN)])
def test_app_wide_dialect_follows_the_path(path, dialect):
    assert d.for_path(path) is dialect


def test_every_registered_blueprint_has_the_handlers_installed(make_app):
    app = make_app()
    for name in app.blueprints:
        handlers = app.error_handler_spec[name][None]
        assert {ApiError, EngineError, HTTPException} <= set(handlers), name
