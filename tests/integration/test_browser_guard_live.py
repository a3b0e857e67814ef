"""Host, Origin and Content-Type checks over real HTTP, and the official clients passing them on the real model."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import huggingface_hub
import ollama
import openai
import pytest
import requests
from huggingface_hub.utils import _http as hf_http

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
EVIL = "https://evil.example"


def _raw_get(live_server, path: str, host: str) -> tuple[int, dict]:
    """GET with a Host header of our choosing (requests would send the URL's)."""
    parts = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def _tag_names(live_server) -> list[str]:
    response = requests.get(live_server.url + "/api/tags", timeout=30)
    assert response.status_code == 200
    return [model["name"] for model in response.json()["models"]]


class ContentTypes:
    """An httpx(2) request hook that records the Content-Type of every POST a client sends."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, request) -> None:
        if request.method == "POST":
            self.seen.append(request.headers.get("content-type", ""))


def test_an_evil_host_is_refused_on_api_tags(live_server):
    status, body = _raw_get(live_server, "/api/tags", "evil.example")
    assert status == 403
    assert "evil.example" in body["error"] and "allowed_hosts" in body["error"]
    # The same request addressed to a local name is served.
    status, body = _raw_get(live_server, "/api/tags", f"localhost:{live_server.port}")
    assert status == 200 and MODEL in [m["name"] for m in body["models"]]


def test_a_text_plain_delete_from_a_foreign_origin_is_refused_and_the_model_stays(live_server):
    assert MODEL in _tag_names(live_server)
    response = requests.delete(live_server.url + "/api/delete", data=json.dumps({"model": MODEL}),
                               headers={"Content-Type": "text/plain", "Origin": EVIL}, timeout=30)
    assert response.status_code == 403
    # Refused for its origin, before the route could say anything about the model itself.
    assert "allowed_origins" in response.json()["error"]
    assert "Access-Control-Allow-Origin" not in response.headers
    assert MODEL in _tag_names(live_server)


def test_a_text_plain_post_is_415_and_curl_d_form_posts_are_served(live_server):
    body = json.dumps({"model": MODEL})
    plain = requests.post(live_server.url + "/api/show", data=body, headers={"Content-Type": "text/plain"},
                          timeout=30)
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]
    # What `curl -d '{...}'` sends, from a non-browser: the JSON body still reaches the route.
    form = requests.post(live_server.url + "/api/show", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
    assert form.status_code == 200 and "details" in form.json()


def test_an_allowed_origin_gets_cors_headers_from_the_real_server(live_server):
    origin = "http://localhost:5173"
    preflight = requests.options(live_server.url + "/v1/chat/completions", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()


def test_the_openai_sdk_sends_json_and_passes(live_server):
    recorder = ContentTypes()
    sdk = openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120,
                        http_client=openai.DefaultHttpxClient(event_hooks={"request": [recorder]}))
    reply = sdk.chat.completions.create(model=MODEL, max_tokens=2, temperature=0,
                                        messages=[{"role": "user", "content": "Say hi."}])
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert recorder.seen == ["application/json"]


def test_the_ollama_client_sends_json_and_passes(live_server):
    recorder = ContentTypes()
    client = ollama.Client(host=live_server.url, timeout=120, event_hooks={"request": [recorder]})
    reply = client.generate(model=MODEL, prompt="Say hi.", options={"temperature": 0, "num_predict": 2})
    assert reply.done is True
    assert recorder.seen == ["application/json"]


@pytest.fixture
def hf_content_types():
    """Record what huggingface_hub's shared HTTP client sends, then restore its default client."""
    recorder = ContentTypes()

    def factory():
        client = hf_http.default_client_factory()
        client.event_hooks["request"].append(recorder)
        return client

    huggingface_hub.set_client_factory(factory)
    try:
        yield recorder
    finally:
        huggingface_hub.set_client_factory(hf_http.default_client_factory)


def test_the_huggingface_inference_client_sends_json_and_passes(live_server, hf_content_types):
    hf = huggingface_hub.InferenceClient(base_url=live_server.url, timeout=120)
    text = hf.text_generation("The capital of France is", max_new_tokens=2)
    assert isinstance(text, str)
    assert hf_content_types.seen == ["application/json"]
