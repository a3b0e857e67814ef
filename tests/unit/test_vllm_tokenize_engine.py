"""vLLM /tokenize gives exactly the prompt tokens the engine sends the back-end for the same request."""
from __future__ import annotations

from dataclasses import replace

import pytest

BOS = 1
TEMPLATE = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}[assistant]"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


@pytest.fixture
def templated(fake_backend):
    """The fake model with a chat template that writes BOS itself, and a tokenizer that adds BOS when asked."""
    real_load = fake_backend.load

    def load(path, options):
        model = real_load(path, options)
        model.facts = replace(model.facts, chat_template=TEMPLATE, bos_text="<s>")
        plain = model.tokenize
        model.tokenize = lambda text, add_special: ([BOS] if add_special else []) + plain(text, add_special)
        return model
    fake_backend.load = load
    return fake_backend


def test_tokenize_messages_matches_the_prompt_of_a_chat_completion(client, templated):
    templated.enqueue("ok")
    assert client.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES}).status_code == 200
    sent = templated.history[-1][1]
    body = client.post("/tokenize", json={"model": "tiny", "messages": MESSAGES}).get_json()
    assert body["tokens"] == sent and body["count"] == len(sent)
    assert sent[0] != BOS  # the template wrote BOS as text: the tokenizer added no second one


def test_tokenize_prompt_follows_add_special_tokens(client, templated):
    with_bos = client.post("/tokenize", json={"model": "tiny", "prompt": "ab"}).get_json()["tokens"]
    without = client.post("/tokenize", json={"model": "tiny", "prompt": "ab", "add_special_tokens": False}
                          ).get_json()["tokens"]
    assert (with_bos, without) == ([BOS, ord("a"), ord("b")], [ord("a"), ord("b")])


def test_tokenize_an_unknown_model_is_404(client):
    response = client.post("/tokenize", json={"model": "nope", "prompt": "x"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == 404
