"""Ollama routes on the scripted back-end: NDJSON framing, metrics, thinking, keep_alive, listings, errors."""
from __future__ import annotations

import json
import re
import struct
import threading
import time
from datetime import datetime
from datetime import timezone

import pytest

from ollama_server.services import EXTENSION_KEY

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
           "eval_duration")


def ndjson(response) -> list[dict]:
    text = response.get_data(as_text=True)
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def post_raw(client, path, payload):
    if isinstance(payload, bytes):
        return client.post(path, data=payload, content_type="application/json")
    return client.post(path, json=payload)


def engine_of(client):
    return client.application.extensions[EXTENSION_KEY].engine


# --- discovery -------------------------------------------------------------------------------------
def test_root_says_ollama_is_running_on_get_and_head(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "Ollama is running"
    assert client.head("/").status_code == 200


def test_version_is_at_least_0_6_4(client):
    for method in (client.get, client.head):
        assert method("/api/version").status_code == 200
    version = tuple(int(p) for p in client.get("/api/version").get_json()["version"].split("."))
    assert version >= (0, 6, 4)


# --- generate and chat -----------------------------------------------------------------------------
def test_generate_streams_ndjson_by_default_and_ends_with_metrics(client, fake_backend):
    fake_backend.enqueue("Hello!")
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "Hi"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = ndjson(response)
    assert all(line["done"] is False and line["model"] == "tiny" for line in lines[:-1])
    assert all(RFC3339_Z.match(line["created_at"]) for line in lines)
    assert "".join(line["response"] for line in lines) == "Hello!"
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop" and last["response"] == ""
    assert all(isinstance(last[key], int) for key in METRICS)
    assert last["eval_count"] == 6 and last["prompt_eval_count"] > 2
    assert last["total_duration"] >= last["eval_duration"] > 1000  # nanoseconds, not seconds


def test_generate_without_stream_is_one_json_object(client, fake_backend):
    fake_backend.enqueue("Paris.")
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "Capital?", "stream": False})
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["response"] == "Paris." and body["done"] is True and body["done_reason"] == "stop"
    assert all(isinstance(body[key], int) for key in METRICS)
    assert "thinking" not in body


def test_num_predict_limits_tokens_and_reports_length(client, fake_backend):
    fake_backend.enqueue("abcdefghij", end=False)
    body = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                              "options": {"num_predict": 4}}).get_json()
    assert body["response"] == "abcd"
    assert body["done_reason"] == "length" and body["eval_count"] == 4


def test_num_predict_beyond_the_context_is_capped_not_refused(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 100000}})
    assert response.status_code == 200 and response.get_json()["response"] == "ok"


def test_chat_streams_assistant_messages(client, fake_backend):
    fake_backend.enqueue("Hey")
    lines = ndjson(client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}))
    assert all(line["message"]["role"] == "assistant" for line in lines)
    assert "".join(line["message"]["content"] for line in lines) == "Hey"
    assert lines[-1]["done"] is True and lines[-1]["message"]["content"] == ""
    assert lines[-1]["eval_count"] == 3


def test_chat_without_stream_returns_the_whole_message(client, fake_backend):
    fake_backend.enqueue("Fine, thanks.")
    body = client.post("/api/chat", json={"model": "tiny", "stream": False, "messages": [
        {"role": "system", "content": "Be polite"}, {"role": "user", "content": "How are you?"}]}).get_json()
    assert body["message"] == {"role": "assistant", "content": "Fine, thanks."}
    prompt = "".join(chr(t) for t in _last_prompt(client))
    assert "Be polite" in prompt and "How are you?" in prompt


def _last_prompt(client):
    return engine_of(client).backend.history[-1][1]


def test_no_model_named_uses_the_smallest(client, fake_backend):
    fake_backend.enqueue("ok")
    body = client.post("/api/generate", json={"prompt": "x", "stream": False}).get_json()
    assert body["model"] == "tiny:latest"
    assert fake_backend.history[-1][0].endswith("tiny.gguf")


def test_the_tag_defaults_to_latest(client, fake_backend):
    fake_backend.enqueue("ok")
    assert client.post("/api/generate", json={"model": "big:latest", "prompt": "x", "stream": False}).status_code == 200
    assert fake_backend.history[-1][0].endswith("big.gguf")


def test_options_reach_the_sampler_with_ollama_defaults_for_the_rest(client, fake_backend):
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "options": {
        "temperature": 0, "top_k": 3, "seed": 7, "repeat_penalty": 1.1, "no_such_option": True}})
    sampling = fake_backend.history[-1][2]
    assert (sampling.temperature, sampling.top_k, sampling.seed, sampling.repeat_penalty) == (0.0, 3, 7, 1.1)
    assert (sampling.top_p, sampling.min_p) == (0.9, 0.0)


@pytest.mark.parametrize("fmt,schema", [("json", {}), ({"type": "object", "properties": {"a": {"type": "string"}}},
                                                       {"type": "object", "properties": {"a": {"type": "string"}}})])
def test_format_constrains_output_to_json(client, fake_backend, fmt, schema):
    fake_backend.enqueue("{}")
    client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "format": fmt})
    assert fake_backend.history[-1][2].json_schema == schema


def test_raw_prompt_is_sent_untemplated(client, fake_backend):
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "<raw>", "raw": True, "stream": False})
    assert _last_prompt(client) == [ord(c) for c in "<raw>"]


def test_system_prepends_a_system_turn(client, fake_backend):
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "Q", "system": "SYS", "stream": False})
    prompt = "".join(chr(t) for t in _last_prompt(client))
    assert prompt.index("SYS") < prompt.index("Q")


def test_a_stop_option_ends_the_answer(client, fake_backend):
    fake_backend.enqueue("one two three")
    body = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                              "options": {"stop": [" two"]}}).get_json()
    assert body["response"] == "one" and body["done_reason"] == "stop"


def test_the_request_id_header_tracks_the_request(client, fake_backend):
    fake_backend.enqueue("ok")
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    request_id = response.headers["X-Request-Id"]
    progress = client.get(f"/api/progress/{request_id}").get_json()
    assert progress["dialect"] == "ollama" and progress["endpoint"] == "/api/generate"
    assert progress["state"] == "done"


def test_logprobs_are_returned_when_asked(client, fake_backend):
    fake_backend.enqueue("ab")
    body = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False, "logprobs": True,
                                              "top_logprobs": 1}).get_json()
    assert [lp["token"] for lp in body["logprobs"]] == ["a", "b"]
    assert body["logprobs"][0]["top_logprobs"] == [{"token": "a", "logprob": 0.0}]


# --- thinking --------------------------------------------------------------------------------------
THOUGHT = "<think>plan</think>answer"


def test_think_true_streams_thinking_separately(client, fake_backend):
    fake_backend.enqueue(THOUGHT)
    lines = ndjson(client.post("/api/generate", json={"model": "tiny", "prompt": "x", "think": True}))
    assert "".join(line.get("thinking", "") for line in lines) == "plan"
    assert "".join(line["response"] for line in lines) == "answer"
    assert all(line["response"] or line.get("thinking") for line in lines[:-1])  # no empty pieces


def test_think_true_in_chat_fills_message_thinking(client, fake_backend):
    fake_backend.enqueue(THOUGHT)
    body = client.post("/api/chat", json={"model": "tiny", "stream": False, "think": True,
                                          "messages": [{"role": "user", "content": "x"}]}).get_json()
    assert body["message"] == {"role": "assistant", "content": "answer", "thinking": "plan"}


def test_without_think_the_reasoning_is_dropped(client, fake_backend):
    fake_backend.enqueue(THOUGHT)
    lines = ndjson(client.post("/api/generate", json={"model": "tiny", "prompt": "x"}))
    assert "".join(line["response"] for line in lines) == "answer"
    assert not any("thinking" in line for line in lines)
    assert all(line["response"] for line in lines[:-1])  # the held-back tag characters send no empty lines


@pytest.mark.parametrize("think", [None, False])
def test_preserve_think_tags_keeps_the_tags_in_the_text(make_app, fake_backend, think):
    client = make_app(preserve_think_tags=True).test_client()
    fake_backend.enqueue(THOUGHT)
    payload = {"model": "tiny", "stream": False, "messages": [{"role": "user", "content": "x"}]}
    if think is not None:
        payload["think"] = think
    body = client.post("/api/chat", json=payload).get_json()
    assert body["message"] == {"role": "assistant", "content": THOUGHT}


def test_think_true_splits_even_when_tags_are_preserved(make_app, fake_backend):
    client = make_app(preserve_think_tags=True).test_client()
    fake_backend.enqueue(THOUGHT)
    body = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                              "think": "high"}).get_json()
    assert (body["thinking"], body["response"]) == ("plan", "answer")


# --- load, unload, keep_alive ----------------------------------------------------------------------
def test_an_empty_prompt_only_loads_the_model(client, fake_backend):
    body = client.post("/api/generate", json={"model": "tiny"}).get_json()
    assert body == {"model": "tiny", "created_at": body["created_at"], "response": "", "done": True,
                    "done_reason": "load"}
    assert fake_backend.history == []
    assert [m["name"] for m in client.get("/api/ps").get_json()["models"]] == ["tiny:latest"]


def test_empty_chat_messages_only_load_the_model(client):
    body = client.post("/api/chat", json={"model": "big", "messages": []}).get_json()
    assert body["done_reason"] == "load" and body["message"] == {"role": "assistant", "content": ""}
    assert [m["name"] for m in client.get("/api/ps").get_json()["models"]] == ["big:latest"]


def test_keep_alive_zero_with_an_empty_prompt_unloads(client, fake_backend):
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    assert len(client.get("/api/ps").get_json()["models"]) == 1
    body = client.post("/api/generate", json={"model": "tiny", "keep_alive": 0}).get_json()
    assert body["done"] is True and body["done_reason"] == "unload"
    assert client.get("/api/ps").get_json() == {"models": []}
    assert fake_backend.loaded[-1].closed


def _expiry(client) -> datetime:
    text = client.get("/api/ps").get_json()["models"][0]["expires_at"]
    assert RFC3339_Z.match(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("keep_alive,seconds", [(None, 300), ("10m", 600), (30, 30), ("1h30m", 5400)])
def test_keep_alive_sets_the_expiry_shown_by_ps(client, fake_backend, keep_alive, seconds):
    fake_backend.enqueue("ok")
    payload = {"model": "tiny", "prompt": "x", "stream": False}
    if keep_alive is not None:
        payload["keep_alive"] = keep_alive
    client.post("/api/generate", json=payload)
    left = (_expiry(client) - datetime.now(timezone.utc)).total_seconds()
    assert seconds - 5 < left <= seconds + 1


@pytest.mark.parametrize("keep_alive", [-1, "-1", "-1m"])
def test_negative_keep_alive_keeps_the_model_forever(client, keep_alive):
    client.post("/api/generate", json={"model": "tiny", "keep_alive": keep_alive})
    assert _expiry(client).year > 2300


# --- listings --------------------------------------------------------------------------------------
def write_gguf(path, metadata: dict) -> None:
    """A header-only GGUF v3 (no tensors) with string, uint32 and string-array values."""
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        out += string(key)
        if isinstance(value, str):
            out += struct.pack("<I", 8) + string(value)
        elif isinstance(value, list):
            out += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(string(v) for v in value)
        else:
            out += struct.pack("<II", 4, value)
    path.write_bytes(out)


@pytest.fixture
def gguf_client(make_app, tmp_path):
    (tmp_path / "models").mkdir()
    write_gguf(tmp_path / "models" / "llamaish.gguf", {
        "general.architecture": "llama", "general.file_type": 15, "general.size_label": "1B",
        "llama.context_length": 2048, "tokenizer.ggml.tokens": ["a", "b", "c"],
        "tokenizer.chat_template": "{{ messages }}"})
    return make_app().test_client()


def test_tags_lists_every_model_with_ollamas_fields(gguf_client):
    models = gguf_client.get("/api/tags").get_json()["models"]
    assert [m["name"] for m in models] == ["big:latest", "llamaish:latest", "tiny:latest"]
    for entry in models:
        assert set(entry) - {"error"} == {"name", "model", "modified_at", "size", "digest", "details"}
        assert entry["model"] == entry["name"]
        assert RFC3339_Z.match(entry["modified_at"])
        assert re.fullmatch(r"[0-9a-f]{64}", entry["digest"])
        assert entry["details"]["format"] == "gguf" and entry["details"]["parent_model"] == ""
    tiny = models[2]
    assert tiny["size"] == 10 and tiny["details"]["family"] == ""  # unparseable header: still listed,
    assert "too small" in tiny["error"] and "error" not in models[1]  # with the reason


def test_tags_details_come_from_the_gguf_header(gguf_client):
    llamaish = gguf_client.get("/api/tags").get_json()["models"][1]
    assert llamaish["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                   "parameter_size": "1B", "quantization_level": "Q4_K_M"}


def test_api_models_is_an_alias_of_tags(client):
    assert client.get("/api/models").get_json() == client.get("/api/tags").get_json()
    assert client.head("/api/tags").status_code == 200


def test_show_gives_model_info_from_the_header(gguf_client):
    body = gguf_client.post("/api/show", json={"model": "llamaish"}).get_json()
    info = body["model_info"]
    assert info["general.architecture"] == "llama" and info["llama.context_length"] == 2048
    assert info["tokenizer.ggml.tokens"] == []  # arrays only in verbose mode
    assert "ollama_server.runtime_context_length" not in info  # not loaded
    assert body["capabilities"] == ["completion"] and body["template"] == "{{ messages }}"
    assert body["details"]["quantization_level"] == "Q4_K_M" and "FROM " in body["modelfile"]
    assert RFC3339_Z.match(body["modified_at"])
    verbose = gguf_client.post("/api/show", json={"model": "llamaish", "verbose": True}).get_json()
    assert verbose["model_info"]["tokenizer.ggml.tokens"] == ["a", "b", "c"]


def test_show_adds_the_runtime_context_of_a_loaded_model(client):
    client.post("/api/generate", json={"model": "tiny"})
    body = client.post("/api/show", json={"name": "tiny"}).get_json()  # legacy "name"
    assert body["model_info"]["ollama_server.runtime_context_length"] == 256
    assert body["model_info"]["fake.context_length"] == 256


@pytest.mark.parametrize("payload,status", [({"model": "nope"}, 404), ({}, 400), (b"", 400)])
def test_show_errors(client, payload, status):
    response = post_raw(client, "/api/show", payload)
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}


def test_ps_lists_loaded_models_with_runtime_context(client, fake_backend):
    assert client.get("/api/ps").get_json() == {"models": []}
    fake_backend.enqueue("ok")
    client.post("/api/generate", json={"model": "tiny", "prompt": "x", "stream": False})
    (entry,) = client.get("/api/ps").get_json()["models"]
    assert entry["name"] == entry["model"] == "tiny:latest"
    assert entry["context_length"] == 256 and entry["size_vram"] == 0 and entry["size"] == 10
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram",
                          "context_length"}


# --- errors ----------------------------------------------------------------------------------------
BAD_REQUESTS = [
    ("missing body", "/api/generate", b"", 400),
    ("whitespace body", "/api/chat", b"  ", 400),
    ("malformed json", "/api/generate", b'{"model": "tiny", "prompt": ', 400),
    ("body is a list", "/api/generate", b"[1, 2]", 400),
    ("prompt is a number", "/api/generate", {"model": "tiny", "prompt": 5}, 400),
    ("prompt is a list", "/api/generate", {"model": "tiny", "prompt": ["a"]}, 400),
    ("stream is a string", "/api/generate", {"model": "tiny", "prompt": "x", "stream": "yes"}, 400),
    ("options not an object", "/api/generate", {"model": "tiny", "prompt": "x", "options": [1]}, 400),
    ("temperature is a string", "/api/generate", {"model": "tiny", "prompt": "x",
                                                  "options": {"temperature": "hot"}}, 400),
    ("num_predict is a string", "/api/generate", {"model": "tiny", "prompt": "x",
                                                  "options": {"num_predict": "16"}}, 400),
    ("stop is a string", "/api/generate", {"model": "tiny", "prompt": "x", "options": {"stop": "x"}}, 400),
    ("raw with system", "/api/generate", {"model": "tiny", "prompt": "x", "raw": True, "system": "s"}, 400),
    ("unknown model", "/api/generate", {"model": "no-such-model", "prompt": "x"}, 404),
    ("unknown model in chat", "/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404),
    ("format xml", "/api/generate", {"model": "tiny", "prompt": "x", "format": "xml"}, 400),
    ("keep_alive forever", "/api/generate", {"model": "tiny", "prompt": "x", "keep_alive": "forever"}, 400),
    ("think level unknown", "/api/generate", {"model": "tiny", "prompt": "x", "think": "extreme"}, 400),
    ("top_logprobs too high", "/api/generate", {"model": "tiny", "prompt": "x", "logprobs": True,
                                                "top_logprobs": 21}, 400),
    ("suffix", "/api/generate", {"model": "tiny", "prompt": "x", "suffix": "y"}, 400),
    ("prompt too long", "/api/generate", {"model": "tiny", "prompt": "x" * 300}, 400),
    ("messages not a list", "/api/chat", {"model": "tiny", "messages": "hi"}, 400),
    ("message without role", "/api/chat", {"model": "tiny", "messages": [{"content": "hi"}]}, 400),
    ("unknown role", "/api/chat", {"model": "tiny", "messages": [{"role": "robot", "content": "hi"}]}, 400),
    ("tools", "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                            "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
    ("images", "/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
     400),
]


@pytest.mark.parametrize("name,path,payload,status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_ollama_errors(client, name, path, payload, status):
    response = post_raw(client, path, payload)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]


def test_error_messages_use_ollamas_wording(client):
    assert post_raw(client, "/api/generate", b"").get_json() == {"error": "missing request body"}
    assert client.post("/api/generate", json={"model": "x1", "prompt": "x"}).get_json() == {
        "error": "model 'x1' not found"}
    assert client.post("/api/generate", json={"model": "tiny", "prompt": "x", "raw": True, "system": "s"}
                       ).get_json() == {"error": "raw mode does not support template, system, or context"}


def test_a_body_over_the_limit_is_413(make_app):
    client = make_app(max_request_bytes=2048).test_client()
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x" * 5000})
    assert response.status_code == 413
    assert list(response.get_json()) == ["error"]


def test_wrong_method_is_405_in_ollamas_shape(client):
    response = client.get("/api/generate")
    assert response.status_code == 405 and list(response.get_json()) == ["error"]


def test_it_returns_503_when_queue_full(make_app, fake_backend):
    client = make_app(max_queue=0).test_client()
    fake_backend.gate.clear()
    holder = threading.Thread(target=lambda: client.post("/api/generate", json={
        "model": "tiny", "prompt": "a", "stream": False, "options": {"num_predict": 3}}))
    holder.start()
    try:
        for _ in range(100):
            if engine_of(client).snapshot()["running"]:
                break
            time.sleep(0.02)
        response = client.post("/api/chat", json={"model": "tiny", "messages": [{"role": "user", "content": "b"}]})
        assert response.status_code == 503
        assert response.get_json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    finally:
        fake_backend.gate.set()
        holder.join()


def test_an_error_mid_stream_is_the_last_ndjson_line(make_app, fake_backend):
    client = make_app(request_timeout=0.3).test_client()
    fake_backend.gate.clear()
    try:
        response = client.post("/api/generate", json={"model": "tiny", "prompt": "x"})
        assert response.status_code == 200
        lines = ndjson(response)
        assert lines[-1] == {"error": "request timed out"}
    finally:
        fake_backend.gate.set()
