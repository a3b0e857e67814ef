"""Host, Origin/CORS and Content-Type checks: the pure helpers by table, then the app on the scripted back-end."""
from __future__ import annotations

import io
import json
import socket

import pytest

from ollama_server.api.browser_guard import host_allowed
from ollama_server.api.browser_guard import is_json_type
from ollama_server.api.browser_guard import origin_allowed
from tests.fakes.tiny_gguf import write_header_model

EVIL = "https://evil.example"
LOCAL_PAGE = "http://localhost:3000"
GENERATE = json.dumps({"model": "tiny", "prompt": "hi", "stream": False})
CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})


# --- pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize("host, allowed, hostname, expected", [
    ("", (), "box", True),
    ("localhost", (), "box", True),
    ("localhost:11435", (), "box", True),
    ("LocalHost:11435", (), "box", True),
    ("localhost.", (), "box", True),
    ("localhost:", (), "box", True),
    ("app.localhost:5173", (), "box", True),
    ("printer.local:631", (), "box", True),
    ("gpu.internal", (), "box", True),
    ("127.0.0.1", (), "box", True),
    ("127.0.0.1:11435", (), "box", True),
    ("192.168.1.20:11435", (), "box", True),
    ("0.0.0.0:11435", (), "box", True),
    ("[::1]", (), "box", True),
    ("[::1]:11435", (), "box", True),
    ("[fe80::1]:80", (), "box", True),
    ("box", (), "box", True),
    ("BOX:11435", (), "Box", True),
    ("gpu.example.com", ("gpu.example.com",), "box", True),
    ("GPU.example.com:8443", ("gpu.example.com",), "box", True),
    ("gpu.example.com:8443", ("gpu.example.com:8443",), "box", True),
    ("gpu.example.com:9000", ("gpu.example.com:8443",), "box", False),
    ("a.example.com", ("*.example.com",), "box", True),
    ("a.b.example.com:80", ("*.example.com",), "box", True),
    ("example.com", ("*.example.com",), "box", False),
    ("badexample.com", ("*.example.com",), "box", False),
    ("anything.example:1234", ("*",), "box", True),
    ("evil.example", (), "box", False),
    ("evil.example:11435", (), "box", False),
    ("localhost.evil.example", (), "box", False),
    ("127.0.0.1.evil.example", (), "box", False),
    ("evil-localhost", (), "box", False),
    ("local", (), "box", False),
    (".local", (), "box", False),
    ("box.evil.example", (), "box", False),
    ("localhost:abc", (), "box", False),
    ("localhost:1:2", (), "box", False),
    ("::1", (), "box", False),
    ("[localhost]", (), "box", False),
    ("[::1]x", (), "box", False),
    ("[::1", (), "box", False),
    ("[127.0.0.1]", (), "box", False),
    ("evil.example", (), "", False),
])
def test_host_allowed_accepts_local_names_ip_literals_and_allowed_hosts_only(host, allowed, hostname, expected):
    assert host_allowed(host, allowed, hostname) is expected


@pytest.mark.parametrize("origin, host, allowed, expected", [
    ("http://localhost", "x", (), True),
    ("https://localhost", "x", (), True),
    ("http://localhost:3000", "x", (), True),
    ("https://127.0.0.1:8443", "x", (), True),
    ("http://0.0.0.0:11435", "x", (), True),
    ("HTTP://LOCALHOST:3000", "x", (), True),
    ("app://obsidian.md", "x", (), True),
    ("file://", "x", (), True),
    ("tauri://localhost", "x", (), True),
    ("vscode-webview://1a2b3c", "x", (), True),
    ("vscode-file://vscode-app", "x", (), True),
    ("http://192.168.1.20:11435", "192.168.1.20:11435", (), True),
    ("https://gpu.example.com", "gpu.example.com", (), True),
    ("http://[::1]:11435", "[::1]:11435", (), True),
    ("https://app.example.com", "x", ("https://*.example.com",), True),
    ("https://app.example.com", "x", ("https://app.example.com/",), True),
    ("chrome-extension://abcdef", "x", ("chrome-extension://*",), True),
    ("https://evil.example", "x", ("*",), True),
    ("null", "x", ("*",), True),
    ("https://evil.example", "localhost:11435", (), False),
    ("http://localhost.evil.example", "x", (), False),
    ("http://localhost:3000.evil.example", "x", (), False),
    ("http://localhost:abc", "x", (), False),
    ("http://127.0.0.1.evil.example", "x", (), False),
    ("null", "x", (), False),
    ("", "x", (), False),
    ("http://192.168.1.20:11435", "localhost:11435", (), False),
    ("http://192.168.1.20:8080", "192.168.1.20:11435", (), False),
    ("ftp://gpu.example.com", "gpu.example.com", (), False),
    ("https://example.com", "x", ("https://*.example.com",), False),
    ("https://app.example.com.evil.net", "x", ("https://*.example.com",), False),
    ("https://evil.example", "x", ("https://app.example.com",), False),
])
def test_origin_allowed_accepts_ollama_defaults_the_own_origin_and_allowed_origins_only(
        origin, host, allowed, expected):
    assert origin_allowed(origin, host, allowed) is expected


@pytest.mark.parametrize("mimetype, expected", [
    ("application/json", True), ("APPLICATION/JSON", True), ("application/vnd.api+json", True),
    ("application/merge-patch+json", True), ("text/plain", False), ("text/json", False),
    ("application/x-ndjson", False), ("application/x-www-form-urlencoded", False),
    ("multipart/form-data", False), ("", False),
])
def test_is_json_type_accepts_application_json_and_plus_json_types(mimetype, expected):
    assert is_json_type(mimetype) is expected


# --- Host --------------------------------------------------------------------------------------
def test_it_refuses_an_evil_host_on_get_api_tags(client):
    response = client.get("/api/tags", headers={"Host": "evil.example"})
    assert response.status_code == 403
    message = response.get_json()["error"]
    assert "evil.example" in message and "allowed_hosts" in message


def test_it_refuses_an_evil_host_on_post_api_generate_without_generating(client, fake_backend):
    response = client.post("/api/generate", data=GENERATE, content_type="application/json",
                           headers={"Host": "evil.example:11435"})
    assert response.status_code == 403
    assert "allowed_hosts" in response.get_json()["error"]
    assert fake_backend.history == [] and fake_backend.loaded == []


def test_it_refuses_an_evil_host_on_v1_in_the_openai_error_shape(client):
    response = client.get("/v1/models", headers={"Host": "evil.example"})
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error" and "allowed_hosts" in error["message"]


@pytest.mark.parametrize("host", ["localhost", "localhost:11435", "127.0.0.1:11435", "[::1]:11435",
                                  "192.168.1.20", "10.0.0.5:8080", "ollama.local", socket.gethostname()])
def test_it_serves_local_hosts_ip_literals_and_this_machine(client, host):
    assert client.get("/api/tags", headers={"Host": host}).status_code == 200


def test_it_serves_a_host_named_in_allowed_hosts(make_app):
    client = make_app(allowed_hosts=["gpu.example.com", "*.corp.example"]).test_client()
    assert client.get("/api/tags", headers={"Host": "gpu.example.com"}).status_code == 200
    assert client.get("/api/tags", headers={"Host": "a.corp.example:443"}).status_code == 200
    assert client.get("/api/tags", headers={"Host": "evil.example"}).status_code == 403


def test_allowed_hosts_star_serves_any_host(make_app):
    client = make_app(allowed_hosts=["*"]).test_client()
    assert client.get("/api/tags", headers={"Host": "evil.example"}).status_code == 200


def test_the_host_check_comes_before_the_origin_check(client):
    response = client.get("/api/tags", headers={"Host": "evil.example", "Origin": LOCAL_PAGE})
    assert response.status_code == 403
    assert "allowed_hosts" in response.get_json()["error"]
    assert "Access-Control-Allow-Origin" not in response.headers


# --- Origin: refused -----------------------------------------------------------------------------
def _register(client, tmp_path, name="reg"):
    path = write_header_model(tmp_path / f"{name}.gguf", context_length=64)
    response = client.post("/models/register", json={"name": name, "path": str(path)})
    assert response.status_code == 201
    return path


def _tag_names(client) -> list[str]:
    return [model["name"] for model in client.get("/api/tags").get_json()["models"]]


def _refused_by_origin(response) -> None:
    assert response.status_code == 403
    body = response.get_json()["error"]
    message = body["message"] if isinstance(body, dict) else body
    assert "allowed_origins" in message and "evil.example" in message
    assert "Access-Control-Allow-Origin" not in response.headers


def test_it_refuses_a_text_plain_post_from_a_foreign_origin(client, fake_backend):
    response = client.post("/api/generate", data=GENERATE, content_type="text/plain", headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert fake_backend.history == []


def test_it_refuses_a_delete_from_a_foreign_origin_and_keeps_the_model(client, tmp_path):
    _register(client, tmp_path)
    response = client.delete("/api/delete", data='{"model": "reg"}', content_type="text/plain",
                             headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert "reg:latest" in _tag_names(client)
    # The same request without a browser's Origin does delete: the refusal above came from the origin.
    assert client.delete("/api/delete", json={"model": "reg"}).status_code == 200
    assert "reg:latest" not in _tag_names(client)


def test_it_refuses_set_active_from_a_foreign_origin_and_keeps_the_choice(client):
    response = client.post("/models/set_active", data='{"model": "big"}', content_type="text/plain",
                           headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert client.get("/models/active").get_json()["chosen"] is None


def test_it_refuses_register_from_a_foreign_origin_and_registers_nothing(client, tmp_path):
    path = write_header_model(tmp_path / "planted.gguf", context_length=64)
    response = client.post("/models/register", data=json.dumps({"name": "planted", "path": str(path)}),
                           content_type="text/plain", headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert "planted" not in json.dumps(client.get("/models").get_json())


def test_it_refuses_a_pull_from_a_foreign_origin(client, tmp_path):
    response = client.post("/api/pull", data='{"model": "https://evil.example/x.gguf"}',
                           content_type="text/plain", headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert not (tmp_path / "data" / "store" / "manifests").exists()


def test_it_refuses_a_chat_completion_from_a_foreign_origin_in_the_openai_shape(client, fake_backend):
    response = client.post("/v1/chat/completions", data=CHAT, content_type="application/json",
                           headers={"Origin": EVIL})
    _refused_by_origin(response)
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert fake_backend.history == []


def test_it_refuses_a_get_from_a_foreign_origin_as_ollama_does(client):
    _refused_by_origin(client.get("/api/tags", headers={"Origin": EVIL}))


def test_it_refuses_a_preflight_from_a_foreign_origin(client):
    response = client.options("/api/delete", headers={"Origin": EVIL, "Access-Control-Request-Method": "DELETE"})
    _refused_by_origin(response)


def test_it_refuses_the_null_origin_of_sandboxed_pages(client):
    response = client.post("/api/generate", data=GENERATE, content_type="text/plain", headers={"Origin": "null"})
    assert response.status_code == 403


# --- Origin: allowed, CORS ------------------------------------------------------------------------
def _has_cors_for(response, origin: str) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in response.headers["Vary"]
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-api-key", "x-request-id", "x-stainless-lang",
            "x-stainless-retry-count", "anthropic-version", "anthropic-beta"} <= allowed
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed


def test_an_allowed_origin_gets_cors_headers(client):
    response = client.get("/api/tags", headers={"Origin": LOCAL_PAGE})
    assert response.status_code == 200
    _has_cors_for(response, LOCAL_PAGE)


def test_an_allowed_origin_gets_cors_headers_on_errors_too(client):
    response = client.get("/v1/models/nope", headers={"Origin": "app://desktop"})
    assert response.status_code == 404
    _has_cors_for(response, "app://desktop")


def test_an_allowed_origin_can_generate(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", data=GENERATE, content_type="application/json",
                           headers={"Origin": "http://127.0.0.1:5173"})
    assert response.status_code == 200 and response.get_json()["response"] == "ok"
    _has_cors_for(response, "http://127.0.0.1:5173")


def test_a_preflight_from_an_allowed_origin_is_204_before_the_api_key_check(make_app):
    client = make_app(api_key="s3cret").test_client()
    response = client.options("/v1/chat/completions", headers={
        "Origin": LOCAL_PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang"})
    assert response.status_code == 204
    assert response.get_data() == b""
    _has_cors_for(response, LOCAL_PAGE)


def test_a_request_without_origin_gets_no_cors_headers(client):
    response = client.get("/api/tags")
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_servers_own_origin_is_allowed(make_app):
    client = make_app(allowed_hosts=["gpu.example.com"]).test_client()
    origin = "https://gpu.example.com:8443"
    response = client.get("/api/tags", headers={"Host": "gpu.example.com:8443", "Origin": origin})
    assert response.status_code == 200
    _has_cors_for(response, origin)


def test_allowed_origins_patterns_are_allowed(make_app):
    client = make_app(allowed_origins=["https://*.example.com", "chrome-extension://*"]).test_client()
    for origin in ("https://app.example.com", "chrome-extension://abcdef"):
        response = client.get("/api/tags", headers={"Origin": origin})
        assert response.status_code == 200
        _has_cors_for(response, origin)
    assert client.get("/api/tags", headers={"Origin": "https://example.org"}).status_code == 403


def test_allowed_origins_star_allows_every_origin(make_app):
    client = make_app(allowed_origins=["*"]).test_client()
    response = client.get("/api/tags", headers={"Origin": EVIL})
    assert response.status_code == 200
    _has_cors_for(response, EVIL)


# --- Content-Type --------------------------------------------------------------------------------
def test_a_text_plain_post_to_v1_is_415_as_an_openai_error_object(client, fake_backend):
    response = client.post("/v1/chat/completions", data=CHAT, content_type="text/plain")
    assert response.status_code == 415
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "text/plain" in error["message"] and "Content-Type: application/json" in error["message"]
    assert fake_backend.history == []


@pytest.mark.parametrize("path, body", [("/api/generate", GENERATE), ("/api/chat", CHAT),
                                        ("/generate", '{"inputs": "hi"}'), ("/tokenize", '{"prompt": "hi"}'),
                                        ("/models/set_active", '{"model": "big"}')])
def test_a_text_plain_post_elsewhere_is_415_as_an_error_string(client, fake_backend, path, body):
    response = client.post(path, data=body, content_type="text/plain")
    assert response.status_code == 415
    message = response.get_json()["error"]
    assert isinstance(message, str)
    assert "text/plain" in message and "-H 'Content-Type: application/json'" in message
    assert fake_backend.history == []


def test_a_body_without_content_type_is_415(client):
    response = client.post("/api/generate", data=GENERATE.encode())
    assert response.status_code == 415
    assert "without Content-Type" in response.get_json()["error"]


def test_a_chunked_text_plain_body_is_415(client):
    response = client.post("/api/generate", input_stream=io.BytesIO(GENERATE.encode()),
                           headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"})
    assert response.status_code == 415


def test_a_text_plain_post_from_an_allowed_origin_is_415_with_cors_headers(client):
    response = client.post("/api/generate", data=GENERATE, content_type="text/plain",
                           headers={"Origin": LOCAL_PAGE})
    assert response.status_code == 415
    _has_cors_for(response, LOCAL_PAGE)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON;charset=UTF-8", "application/vnd.ollama+json"])
def test_json_content_types_are_accepted(client, fake_backend, content_type):
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", data=GENERATE, content_type=content_type)
    assert response.status_code == 200 and response.get_json()["response"] == "ok"


def test_form_urlencoded_without_origin_is_accepted_as_curl_d_sends_it(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", data=GENERATE, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.get_json()["response"] == "ok"


def test_form_urlencoded_delete_without_origin_is_accepted_as_curl_d_sends_it(client, tmp_path):
    _register(client, tmp_path)
    response = client.delete("/api/delete", data='{"model": "reg"}',
                             content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert "reg:latest" not in _tag_names(client)


@pytest.mark.parametrize("headers", [{"Origin": LOCAL_PAGE}, {"Sec-Fetch-Site": "same-origin"},
                                     {"Sec-Fetch-Site": "cross-site"}])
def test_form_urlencoded_from_a_browser_is_415(client, fake_backend, headers):
    response = client.post("/api/generate", data=GENERATE, content_type="application/x-www-form-urlencoded",
                           headers=headers)
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.get_json()["error"]
    assert fake_backend.history == []


def test_an_empty_post_is_not_checked(client):
    response = client.post("/api/dismiss/no-such-request")
    assert response.status_code != 415


def test_a_get_with_an_odd_content_type_is_not_checked(client):
    assert client.get("/api/tags", headers={"Content-Type": "text/plain"}).status_code == 200


def test_the_api_key_check_comes_before_the_content_type_check(make_app):
    client = make_app(api_key="s3cret").test_client()
    assert client.post("/api/generate", data=GENERATE, content_type="text/plain").status_code == 401
    authorized = client.post("/api/generate", data=GENERATE, content_type="text/plain",
                             headers={"Authorization": "Bearer s3cret"})
    assert authorized.status_code == 415
