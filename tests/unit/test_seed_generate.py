"""POST /generate carries two bodies: TGI's {"inputs"} and the companion seed's {"prompt"}; each gets its shape."""
from __future__ import annotations

import pytest


def test_the_seed_body_is_answered_at_once_with_the_text(client, fake_backend):
    fake_backend.enqueue("2 + 2 is 4.")
    answer = client.post("/generate", json={"prompt": "What is 2+2?", "max_tokens": 16, "temperature": 0.7,
                                            "top_p": 0.9, "mode": "normal"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["text"] == "2 + 2 is 4." and body["status"] == "done" and body["job_id"].startswith("gen_")
    assert body["usage"]["completion_tokens"] > 0 and body["model_id"]
    _, prompt, sampling = fake_backend.history[-1][:3]
    assert "What is 2+2?" in fake_backend.loaded[0].detokenize(prompt)
    assert sampling.temperature == 0.7 and sampling.top_p == 0.9


def test_a_tgi_body_on_the_same_path_keeps_tgi_shape(client, fake_backend):
    fake_backend.enqueue("four")
    answer = client.post("/generate", json={"inputs": "What is 2+2?", "parameters": {"max_new_tokens": 4}})
    assert answer.status_code == 200 and answer.get_json()["generated_text"] == "four"


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "mode": "dream"}, "mode"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "stop": ["\n"]}, "stop"),
    ({"prompt": "x", "model_id": "no-such-model"}, "no-such-model"),
])
def test_a_bad_seed_body_gets_a_400_or_404_in_the_seed_shape(client, body, field):
    answer = client.post("/generate", json=body)
    assert answer.status_code in (400, 404), answer.get_json()
    detail = answer.get_json()["detail"]
    assert field in detail, detail


def test_mode_think_on_a_model_that_cannot_think_is_refused_naming_mode(client):
    answer = client.post("/generate", json={"prompt": "What is 2+2?", "mode": "think"})
    assert answer.status_code == 400
    assert answer.get_json()["detail"].startswith("mode: ") and "thinking" in answer.get_json()["detail"]
