"""The official `ollama` client against the real server and the real Gemma model."""
from __future__ import annotations

import json

import ollama
import pytest
import requests

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
FAST = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def client(live_server):
    return ollama.Client(host=live_server.url, timeout=120)


def test_generate_answers_with_metrics_in_nanoseconds(client):
    reply = client.generate(model=MODEL, prompt="What is the capital of France?", options=FAST)
    # Gemma 3 270M is tiny: the contract is a real, non-empty answer, not its accuracy.
    assert any(ch.isalpha() for ch in reply.response)
    assert reply.done is True and reply.done_reason in ("stop", "length")
    assert 0 < reply.eval_count <= 16 and reply.prompt_eval_count > 5
    assert reply.total_duration >= reply.eval_duration > 1_000_000  # at least a millisecond, in ns
    assert reply.created_at.endswith("Z")


def test_streamed_generate_equals_the_whole_one(client):
    whole = client.generate(model=MODEL, prompt="Name a colour.", options=FAST)
    parts = list(client.generate(model=MODEL, prompt="Name a colour.", options=FAST, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].eval_count == whole.eval_count
    assert parts[-1].done_reason == whole.done_reason


def test_chat_answers_as_the_assistant(client):
    reply = client.chat(model=MODEL, options=FAST,
                        messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert reply.message.role == "assistant"
    assert any(ch.isalpha() for ch in reply.message.content)
    assert reply.done_reason in ("stop", "length") and reply.eval_count <= 16


def test_streamed_chat_equals_the_whole_one(client):
    messages = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name a fruit."}]
    whole = client.chat(model=MODEL, messages=messages, options=FAST)
    parts = list(client.chat(model=MODEL, messages=messages, options=FAST, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count


def test_num_predict_stops_with_length(client):
    reply = client.generate(model=MODEL, prompt="Count: 1, 2, 3,", options={"temperature": 0, "num_predict": 4})
    assert reply.done_reason == "length" and reply.eval_count == 4


def test_format_json_constrains_the_output(client):
    reply = client.generate(model=MODEL, prompt="Give a JSON object with a name.", format="json",
                            options={"temperature": 0, "num_predict": 3})  # grammar sampling is slow
    assert reply.response.lstrip().startswith("{")


def test_list_shows_the_bundled_model_with_header_details(client):
    models = {m.model: m for m in client.list().models}
    entry = models[MODEL]
    assert entry.size > 100_000_000 and len(entry.digest) == 64
    assert entry.details.format == "gguf" and entry.details.family == "gemma3"
    assert entry.details.quantization_level == "Q4_K_M" and entry.details.parameter_size
    assert entry.modified_at is not None


def test_show_reports_the_trained_and_runtime_context(client):
    client.generate(model=MODEL, prompt="")  # make sure it is loaded
    info = client.show(MODEL)
    assert info.modelinfo["general.architecture"] == "gemma3"
    assert info.modelinfo["gemma3.context_length"] == 32768
    assert info.modelinfo["ollama_server.runtime_context_length"] == 1024
    assert "completion" in info.capabilities
    assert info.details.family == "gemma3"


def test_ps_shows_the_loaded_model(client):
    client.generate(model=MODEL, prompt="")
    (entry,) = [m for m in client.ps().models if m.model == MODEL]
    assert entry.context_length == 1024
    assert entry.expires_at is not None and entry.size_vram == 0


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="no-such-model", prompt="x")
    assert caught.value.status_code == 404
    assert "not found" in caught.value.error


def test_a_bad_option_type_is_a_400(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model=MODEL, prompt="x", options={"temperature": "hot"})
    assert caught.value.status_code == 400


def test_probes_see_an_ollama_server(live_server):
    root = requests.get(live_server.url + "/", timeout=10)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert requests.head(live_server.url + "/", timeout=10).status_code == 200
    version = requests.get(live_server.url + "/api/version", timeout=10).json()["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 4)


def test_raw_streaming_over_http_is_ndjson(live_server):
    response = requests.post(live_server.url + "/api/generate", timeout=120, stream=True, json={
        "model": MODEL, "prompt": "The sky is", "raw": True, "options": {"temperature": 0, "num_predict": 6}})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert response.headers["X-Request-Id"]
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and 0 < lines[-1]["eval_count"] <= 6
    assert all(isinstance(lines[-1][key], int) for key in ("total_duration", "eval_duration"))
    assert "".join(line["response"] for line in lines).strip()
