"""A chunked body (no Content-Length) past max_request_bytes is a 413 in the route's dialect, as one with a
Content-Length is; werkzeug alone would cut it at the limit and hand the route a truncated body."""
from __future__ import annotations

import io
import json

import pytest

LIMIT = 4096


def chunked(client, path: str, body: bytes):
    """POST `body` as a server hands a chunked request to the app: no CONTENT_LENGTH, input terminated."""
    return client.post(path, input_stream=io.BytesIO(body), content_type="application/json",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def padded(size: int) -> bytes:
    """A valid JSON body of exactly `size` bytes."""
    head = b'{"model": "tiny", "prompt": "hi", "stream": false, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.fixture
def client(make_app):
    return make_app(max_request_bytes=LIMIT).test_client()


@pytest.mark.parametrize("path, shape", [("/api/generate", "error"), ("/v1/completions", "openai"),
                                         ("/v1/messages", "anthropic")])
def test_a_chunked_body_over_the_limit_is_413_in_the_routes_dialect(client, path, shape):
    response = chunked(client, path, padded(LIMIT + 1))
    assert response.status_code == 413
    body = response.get_json()
    if shape == "openai":
        assert body["error"]["code"] is not None or body["error"]["type"]
    elif shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
    else:
        assert isinstance(body["error"], str)


def test_a_chunked_body_at_the_limit_reaches_the_route_whole(client, fake_backend):
    body = padded(LIMIT)
    assert json.loads(body)["pad"]  # valid JSON, exactly LIMIT bytes
    fake_backend.enqueue("ok")
    response = chunked(client, "/api/generate", body)
    # The route parsed the whole body: it refuses the unknown "pad" field or answers; never "invalid JSON".
    assert response.status_code in (200, 400)
    assert "JSON" not in (response.get_json().get("error") or "")
