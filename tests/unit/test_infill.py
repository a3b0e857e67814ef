"""Fill-in-the-middle: llama-server's /infill, OpenAI completions `suffix`, Ollama generate `suffix`."""
from __future__ import annotations

import json

import pytest

from ollama_server.engine.backend import LoadOptions
from tests.fakes.backend import FakeBackend
from tests.fakes.backend import FakeModel

# Special tokens above every code point the fake's text tokens use (code points, EOS 0).
SPECIAL = {"<|fim_prefix|>": 0x10FF00, "<|fim_suffix|>": 0x10FF01, "<|fim_middle|>": 0x10FF02,
           "<|repo_name|>": 0x10FF03, "<|file_sep|>": 0x10FF04}
BY_ID = {token: text for text, token in SPECIAL.items()}


class FimModel(FakeModel):
    """The fake model with Qwen2.5-Coder's FIM and repo-level tokens in its vocabulary."""

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        out, at = [], 0
        while at < len(text):
            special = next((s for s in SPECIAL if text.startswith(s, at)), None)
            if special:
                out.append(SPECIAL[special])
                at += len(special)
            else:
                out.append(ord(text[at]))
                at += 1
        return out

    def token_bytes(self, token: int) -> bytes:
        return BY_ID.get(token, chr(token)).encode("utf-8")

    def detokenize(self, tokens) -> str:
        return "".join(BY_ID.get(t, chr(t)) for t in tokens)


class FimBackend(FakeBackend):
    def load(self, path: str, options: LoadOptions) -> FimModel:
        self.load_gate.wait()
        model = FimModel(self, path, options)
        self.loaded.append(model)
        return model


@pytest.fixture
def fim_client(tmp_path):
    """An app whose models have FIM tokens (the shared make_app fixture builds on the plain fake)."""
    from ollama_server import create_app
    from ollama_server.settings import build_settings
    models = tmp_path / "models"
    models.mkdir()
    (models / "coder.gguf").write_bytes(b"x" * 10)
    backend = FimBackend()
    settings = build_settings({"models_dir": [str(models)], "data_dir": str(tmp_path / "data"),
                               "default_context_size": 512, "parallel_slots": 1})
    app = create_app({"TESTING": True, "SETTINGS": settings, "BACKEND": backend, "NVML": None})
    return app.test_client(), backend


def prompt_text(backend: FakeBackend) -> str:
    """The last generation's prompt, special tokens spelled out."""
    return "".join(BY_ID.get(t, chr(t)) for t in backend.history[-1][1])


def test_infill_lays_out_pre_prefix_prompt_suf_suffix_mid(fim_client):
    client, backend = fim_client
    backend.enqueue("a + b")
    response = client.post("/infill", json={"input_prefix": "def add(a, b):\n    return ", "prompt": "",
                                            "input_suffix": "\n\nprint(add(1, 2))\n"})
    assert response.status_code == 200, response.get_json()
    assert prompt_text(backend) == ("<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\nprint(add(1, 2))\n"
                                    "<|fim_middle|>")
    assert response.get_json()["content"] == "a + b"


def test_infill_puts_the_prompt_after_the_prefix_as_llama_server_does(fim_client):
    client, backend = fim_client
    client.post("/infill", json={"input_prefix": "x = ", "prompt": "1 +", "input_suffix": "\n"})
    assert prompt_text(backend) == "<|fim_prefix|>x = 1 +<|fim_suffix|>\n<|fim_middle|>"


def test_infill_with_input_extra_uses_the_repo_level_layout(fim_client):
    client, backend = fim_client
    extra = [{"filename": "util.py", "text": "def one():\n    return 1\n"}, {"text": "X = 2\n"}]
    client.post("/infill", json={"input_prefix": "y = ", "input_suffix": "\n", "input_extra": extra})
    assert prompt_text(backend) == ("<|repo_name|>myproject\n<|file_sep|>util.py\ndef one():\n    return 1\n"
                                    "<|file_sep|>tmp\nX = 2\n<|file_sep|>filename\n"
                                    "<|fim_prefix|>y = <|fim_suffix|>\n<|fim_middle|>")


def test_infill_answers_like_llama_server_completion(fim_client):
    client, backend = fim_client
    backend.enqueue("42\n")
    body = client.post("/infill", json={"input_prefix": "x = ", "input_suffix": "", "n_predict": 8,
                                        "return_tokens": True}).get_json()
    assert body["content"] == "42\n" and body["stop"] is True
    assert body["tokens_predicted"] == 3 and body["tokens"] == [ord(c) for c in "42\n"]
    assert body["tokens_evaluated"] == len(backend.history[-1][1])
    assert body["stop_type"] == "eos" and body["has_new_line"] is True and body["model"] == "coder:latest"
    assert body["generation_settings"]["n_predict"] == 8 and "predicted_per_second" in body["timings"]


def test_infill_n_predict_limits_the_reply_with_stop_type_limit(fim_client):
    client, backend = fim_client
    backend.enqueue("abcdef")
    body = client.post("/infill", json={"input_prefix": "", "input_suffix": "", "n_predict": 2}).get_json()
    assert body["content"] == "ab" and body["stop_type"] == "limit"


def test_infill_streams_pieces_then_a_stop_true_object(fim_client):
    client, backend = fim_client
    backend.enqueue("abc")
    response = client.post("/infill", json={"input_prefix": "p", "input_suffix": "s", "stream": True})
    assert response.mimetype == "text/event-stream"
    events = [json.loads(line[len("data: "):]) for line in response.get_data(as_text=True).split("\n\n") if line]
    assert "".join(e["content"] for e in events) == "abc"
    assert [e["stop"] for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-1]["tokens_predicted"] == 3 and events[-1]["stop_type"] == "eos"


def test_openai_completion_suffix_uses_the_fim_layout(fim_client):
    client, backend = fim_client
    backend.enqueue("mid")
    body = client.post("/v1/completions", json={"model": "coder", "prompt": "pre", "suffix": "post"}).get_json()
    assert prompt_text(backend) == "<|fim_prefix|>pre<|fim_suffix|>post<|fim_middle|>"
    assert body["choices"][0]["text"] == "mid"


def test_ollama_generate_suffix_uses_the_fim_layout(fim_client):
    client, backend = fim_client
    backend.enqueue("mid")
    body = client.post("/api/generate", json={"model": "coder", "prompt": "pre", "suffix": "post",
                                              "stream": False}).get_json()
    assert prompt_text(backend) == "<|fim_prefix|>pre<|fim_suffix|>post<|fim_middle|>"
    assert body["response"] == "mid"


def test_infill_on_a_model_without_fim_tokens_is_400_naming_the_model(client):
    response = client.post("/infill", json={"model": "tiny", "input_prefix": "a", "input_suffix": "b"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert '"tiny:latest" does not support insert' in error["message"]


def test_openai_suffix_on_a_model_without_fim_tokens_is_400_naming_the_model(client):
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": "a", "suffix": "b"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert '"tiny:latest" does not support insert' in error["message"] and error["param"] == "suffix"


def test_ollama_suffix_on_a_model_without_fim_tokens_is_400_naming_the_model(client):
    response = client.post("/api/generate", json={"model": "tiny", "prompt": "a", "suffix": "b"})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith('"tiny:latest" does not support insert')


def test_openai_suffix_with_token_ids_is_400_naming_suffix(fim_client):
    client, _ = fim_client
    response = client.post("/v1/completions", json={"model": "coder", "prompt": [1, 2], "suffix": "b"})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "suffix"


def test_ollama_suffix_with_system_is_400_naming_system(fim_client):
    client, _ = fim_client
    response = client.post("/api/generate", json={"model": "coder", "prompt": "a", "suffix": "b", "system": "s"})
    assert response.status_code == 400 and "system" in response.get_json()["error"]


@pytest.mark.parametrize("field, value", [("n_probs", 3), ("mirostat", 2), ("logit_bias", [[1, -1]])])
def test_infill_refuses_llama_server_fields_it_cannot_honour_naming_them(fim_client, field, value):
    client, _ = fim_client
    response = client.post("/infill", json={"input_prefix": "a", "input_suffix": "b", field: value})
    assert response.status_code == 400 and field in response.get_json()["error"]["message"]


def test_infill_with_a_malformed_input_extra_is_400_naming_the_field(fim_client):
    client, _ = fim_client
    response = client.post("/infill", json={"input_prefix": "a", "input_extra": [{"text": 5}]})
    assert response.status_code == 400 and "input_extra" in response.get_json()["error"]["message"]


def test_infill_grammar_reaches_the_sampler(fim_client):
    client, backend = fim_client
    backend.enqueue("yes")
    client.post("/infill", json={"input_prefix": "a", "input_suffix": "b", "grammar": 'root ::= "yes"'})
    assert backend.grammars[-1] == 'root ::= "yes"'
