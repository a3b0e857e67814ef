"""vLLM extras on the scripted back-end: sampling fields reach the engine, n choices, logprobs, tokenizer routes."""
import pytest


def chat(client, **extra):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}
    return client.post("/v1/chat/completions", json=body)


def test_sampling_extras_reach_the_engine(client, fake_backend):
    fake_backend.enqueue("ok")
    chat(client, top_k=5, min_p=0.1, repetition_penalty=1.3, temperature=0.5, seed=7)
    sampling = fake_backend.history[-1][2]
    assert (sampling.top_k, sampling.min_p, sampling.repeat_penalty, sampling.temperature, sampling.seed) == \
        (5, 0.1, 1.3, 0.5, 7)


def test_top_k_minus_one_means_off(client, fake_backend):
    chat(client, top_k=-1)
    assert fake_backend.history[-1][2].top_k == 0


def test_min_tokens_holds_off_the_end_of_generation(client, fake_backend):
    fake_backend.enqueue("ab")  # would end after two tokens
    body = chat(client, min_tokens=5, max_tokens=5).get_json()
    assert body["choices"][0]["message"]["content"] == "ab..."


def test_ignore_eos_generates_to_max_tokens(client, fake_backend):
    fake_backend.enqueue("ab")
    body = chat(client, ignore_eos=True, max_tokens=4).get_json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4


def test_stop_token_ids_end_the_generation(client, fake_backend):
    fake_backend.enqueue("abcdef")
    body = chat(client, stop_token_ids=[ord("c")]).get_json()
    assert body["choices"][0]["message"]["content"] == "abc"
    assert body["choices"][0]["stop_reason"] == ord("c")


def test_include_stop_str_in_output_keeps_the_stop(client, fake_backend):
    fake_backend.enqueue("one two three")
    body = chat(client, stop=["two"], include_stop_str_in_output=True).get_json()
    assert body["choices"][0]["message"]["content"] == "one two"
    assert body["choices"][0]["stop_reason"] == "two"


def test_n_gives_that_many_choices(client, fake_backend):
    fake_backend.enqueue("A")
    fake_backend.enqueue("B")
    body = chat(client, n=2, seed=1).get_json()
    assert [(c["index"], c["message"]["content"]) for c in body["choices"]] == [(0, "A"), (1, "B")]
    assert [h[2].seed for h in fake_backend.history[-2:]] == [1, 2]


def test_completion_logprobs_have_vllm_shape(client, fake_backend):
    fake_backend.enqueue("xy")
    body = client.post("/v1/completions", json={"model": "tiny", "prompt": "p", "logprobs": 1}).get_json()
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["x", "y"]
    assert logprobs["text_offset"] == [0, 1]
    assert logprobs["token_logprobs"] == [0.0, 0.0]
    assert logprobs["top_logprobs"] == [{"x": 0.0}, {"y": 0.0}]


def test_chat_logprobs_have_openai_shape(client, fake_backend):
    fake_backend.enqueue("x")
    body = chat(client, logprobs=True, top_logprobs=1).get_json()
    entry = body["choices"][0]["logprobs"]["content"][0]
    assert entry["token"] == "x" and entry["logprob"] == 0.0 and entry["top_logprobs"][0]["token"] == "x"


def test_models_carry_max_model_len_and_root(client):
    card = client.get("/v1/models/tiny").get_json()
    assert card["max_model_len"] == 256
    assert card["root"].endswith("tiny.gguf")


def test_tokenize_and_detokenize_round_trip(client):
    tokens = client.post("/tokenize", json={"model": "tiny", "prompt": "hey"}).get_json()
    assert tokens == {"count": 3, "max_model_len": 256, "tokens": [104, 101, 121]}
    assert client.post("/detokenize", json={"model": "tiny", "tokens": tokens["tokens"]}).get_json() == \
        {"prompt": "hey"}


def test_tokenize_renders_chat_messages(client):
    body = client.post("/tokenize", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]}).get_json()
    assert body["count"] == len("<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")


def test_version_answers(client):
    assert client.get("/version").get_json()["version"]


VLLM_BAD = [
    ("tokenize without prompt", "/tokenize", {"model": "tiny"}, 400),
    ("tokenize both", "/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, 400),
    ("detokenize wrong type", "/detokenize", {"tokens": "abc"}, 400),
    ("detokenize negative id", "/detokenize", {"tokens": [-1]}, 400),
    ("detokenize out of vocabulary", "/detokenize", {"tokens": [0x110000 + 5]}, 400),
    ("detokenize unknown model", "/detokenize", {"model": "nope", "tokens": [1]}, 404),
    ("chat top_k below -1", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_k": -2},
     400),
    ("chat repetition_penalty zero", "/v1/chat/completions",
     {"messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0}, 400),
    ("chat min_p above one", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "min_p": 2},
     400),
    ("chat min_tokens negative", "/v1/chat/completions",
     {"messages": [{"role": "user", "content": "x"}], "min_tokens": -1}, 400),
    ("chat n too large", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 99}, 400),
    ("completion logprobs too many", "/v1/completions", {"prompt": "x", "logprobs": 50}, 400),
    ("stop_token_ids not ints", "/v1/completions", {"prompt": "x", "stop_token_ids": ["a"]}, 400),
]


@pytest.mark.parametrize("name,path,payload,status", VLLM_BAD, ids=[b[0] for b in VLLM_BAD])
def test_bad_vllm_requests_are_rejected_in_shape(client, name, path, payload, status):
    response = client.post(path, json=payload)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["message"] and {"message", "type", "param", "code"} <= set(error)
