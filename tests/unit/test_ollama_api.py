"""Ollama routes on the scripted back-end: NDJSON framing, metrics, thinking, keep_alive, listings, errors."""
from __future__ import annotations

from datetime import datetime
from datetime import timezone

import pytest

from tests.unit.ollama_support import METRICS
from tests.unit.ollama_support import RFC3339_Z
from tests.unit.ollama_support import engine_of
from tests.unit.ollama_support import ndjson


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


# A template that knows <think> (DeepSeek-R1 style): the model can think, so `think: true` is accepted.
THINKING_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")


def test_think_true_streams_thinking_separately(client, fake_backend):
    fake_backend.chat_template = THINKING_TEMPLATE
    fake_backend.enqueue(THOUGHT)
    lines = ndjson(client.post("/api/generate", json={"model": "tiny", "prompt": "x", "think": True}))
    assert "".join(line.get("thinking", "") for line in lines) == "plan"
    assert "".join(line["response"] for line in lines) == "answer"
    assert all(line["response"] or line.get("thinking") for line in lines[:-1])  # no empty pieces


def test_think_true_in_chat_fills_message_thinking(client, fake_backend):
    fake_backend.chat_template = THINKING_TEMPLATE
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
    fake_backend.chat_template = THINKING_TEMPLATE
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


def test_think_true_on_a_model_that_cannot_think_is_refused_as_ollama_does(client, fake_backend):
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "x", "think": True})
    assert response.status_code == 400 and "does not support thinking" in response.get_json()["error"]
