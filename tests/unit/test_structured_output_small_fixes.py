"""The small fixes of issue 12: GET /ping, TGI's /tokenize beside vLLM's, and TGI's device reported from the
model's offload rather than hard-coded."""
import threading
import time
from dataclasses import replace

import pytest

from ollama_server.api.tgi.tokenize import token_spans
from ollama_server.services import EXTENSION_KEY


def wait_until(condition, timeout: float = 10.0):
    """Poll condition() until it holds; the deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        threading.Event().wait(0.02)
    pytest.fail("condition not met before the deadline")


def test_ping_is_503_loading_while_the_model_loads_then_200_ok(make_app, fake_backend):
    app = make_app()
    fake_backend.load_gate.clear()  # hold the warm-up load
    services = app.extensions[EXTENSION_KEY]
    services.start()
    client = app.test_client()
    try:
        loading = client.get("/ping")
        assert loading.status_code == 503 and loading.get_json() == {"status": "loading"}
    finally:
        fake_backend.load_gate.set()
    wait_until(lambda: client.get("/ping").status_code == 200)
    assert client.get("/ping").get_json() == {"status": "ok"}
    services.close()


def test_ping_needs_no_api_key(make_app):
    client = make_app(api_key="secret").test_client()
    assert client.get("/ping").status_code == 200


def test_tgi_tokenize_answers_tokens_with_byte_offsets(client):
    response = client.post("/tokenize", json={"inputs": "hé!"})
    assert response.status_code == 200
    assert response.get_json() == [{"id": ord("h"), "text": "h", "start": 0, "stop": 1},
                                   {"id": ord("é"), "text": "é", "start": 1, "stop": 3},
                                   {"id": ord("!"), "text": "!", "start": 3, "stop": 4}]


def test_tgi_tokenize_accepts_parameters_and_picks_the_model_there(client):
    response = client.post("/tokenize", json={"inputs": "ab", "parameters": {"model": "big"}})
    assert response.status_code == 200 and [t["text"] for t in response.get_json()] == ["a", "b"]


def test_vllm_tokenize_still_answers_vllm_on_the_same_path(client):
    response = client.post("/tokenize", json={"prompt": "ab"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["tokens"] == [ord("a"), ord("b")] and body["count"] == 2


def test_tgi_tokenize_errors_are_in_tgi_shape(client):
    response = client.post("/tokenize", json={"inputs": ""})
    assert response.status_code == 422
    assert response.get_json() == {"error": "`inputs` cannot be empty", "error_type": "validation"}
    unknown = client.post("/tokenize", json={"inputs": "x", "model": "nope"})
    assert unknown.status_code == 422 and unknown.get_json()["error_type"] == "validation"


def test_vllm_tokenize_errors_stay_in_vllm_shape(client):
    response = client.post("/tokenize", json={"prompt": "x", "messages": [{"role": "user", "content": "y"}]})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == 400


def test_token_spans_give_tokens_absent_from_the_text_an_empty_span():
    spans = token_spans("hi you", [(2, "<bos>"), (10, "hi"), (11, " you")])
    assert spans == [{"id": 2, "text": "<bos>", "start": 0, "stop": 0},
                     {"id": 10, "text": "hi", "start": 0, "stop": 2},
                     {"id": 11, "text": " you", "start": 2, "stop": 6}]
    leading = token_spans("hi", [(5, " hi")])  # a word-start space the text did not have
    assert leading == [{"id": 5, "text": " hi", "start": 0, "stop": 2}]


def offload(fake_backend, supported: bool, layers: int) -> None:
    for model in fake_backend.loaded:
        model.facts = replace(model.facts, gpu_offload_supported=supported, gpu_layers=layers)


@pytest.mark.parametrize("supported,layers,device", [(False, -1, "cpu"), (True, 0, "cpu"), (True, -1, "gpu"),
                                                     (True, 12, "gpu")])
def test_tgi_reports_the_device_the_model_was_loaded_on(client, fake_backend, supported, layers, device):
    fake_backend.enqueue("a")
    assert client.post("/generate", json={"inputs": "x"}).status_code == 200  # loads the default model
    offload(fake_backend, supported, layers)
    fake_backend.enqueue("b")
    assert client.post("/generate", json={"inputs": "x"}).headers["x-compute-type"] == device
    fake_backend.enqueue("c")
    stream = client.post("/generate_stream", json={"inputs": "x"})
    assert stream.headers["x-compute-type"] == device
    stream.get_data()
    assert client.get("/info").get_json()["model_device_type"] == device


def test_vllm_tokenize_renders_the_tools_into_the_prompt_as_a_chat_request_would(make_app):
    client = make_app().test_client()
    messages = [{"role": "user", "content": "Weather?"}]
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    plain = client.post("/tokenize", json={"model": "tiny", "messages": messages}).get_json()
    with_tools = client.post("/tokenize", json={"model": "tiny", "messages": messages, "tools": [tool]}).get_json()
    assert with_tools["count"] > plain["count"]  # the tool description is part of the prompt now


def test_vllm_tokenize_refuses_tools_without_messages_naming_the_field(make_app):
    client = make_app().test_client()
    tool = {"type": "function", "function": {"name": "f"}}
    response = client.post("/tokenize", json={"model": "tiny", "prompt": "x", "tools": [tool]})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "tools"
