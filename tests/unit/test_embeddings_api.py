"""Embeddings on the scripted back-end: OpenAI and Ollama shapes, batching, base64, dimensions, errors."""
import base64
import math

import numpy as np

from ollama_server.services import EXTENSION_KEY
from tests.fakes.backend import FAKE_EMBED_DIM


def expected(text: str, width: int = FAKE_EMBED_DIM) -> list[float]:
    """What the fake pools for `text` (one token per character), normalized, cut to `width`, renormalized."""
    tokens = [ord(c) for c in text]
    raw = np.array([sum((t * (i + 1)) % 7 - 3 for t in tokens) / len(tokens) + 0.5 for i in range(FAKE_EMBED_DIM)])
    unit = raw / np.linalg.norm(raw)
    return list(unit[:width] / np.linalg.norm(unit[:width]))


def close_to(actual, wanted) -> bool:
    return np.allclose(np.asarray(actual, dtype=np.float64), np.asarray(wanted), atol=1e-6)


def test_openai_embeddings_returns_one_unit_vector_per_input_in_order(client):
    texts = ["alpha", "beta", "gamma"]
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": texts})
    assert response.status_code == 200
    body = response.get_json()
    assert body["object"] == "list" and body["model"] == "tiny:latest"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    for text, item in zip(texts, body["data"]):
        assert close_to(item["embedding"], expected(text))
        assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-5)
    assert body["usage"] == {"prompt_tokens": 14, "total_tokens": 14}


def test_openai_base64_is_little_endian_float32_of_the_same_vector(client):
    floats = client.post("/v1/embeddings", json={"model": "tiny", "input": "hello"}).get_json()
    encoded = client.post("/v1/embeddings", json={"model": "tiny", "input": "hello",
                                                  "encoding_format": "base64"}).get_json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert close_to(decoded, floats["data"][0]["embedding"])


def test_openai_token_id_inputs_embed_like_their_text(client):
    text_body = client.post("/v1/embeddings", json={"model": "tiny", "input": ["ab", "cd"]}).get_json()
    flat = client.post("/v1/embeddings", json={"model": "tiny", "input": [97, 98]}).get_json()
    nested = client.post("/v1/embeddings", json={"model": "tiny", "input": [[97, 98], [99, 100]]}).get_json()
    assert len(flat["data"]) == 1 and close_to(flat["data"][0]["embedding"], text_body["data"][0]["embedding"])
    assert [close_to(a["embedding"], b["embedding"]) for a, b in zip(nested["data"], text_body["data"])] == [True] * 2


def test_openai_dimensions_cuts_and_renormalizes(client):
    body = client.post("/v1/embeddings", json={"model": "tiny", "input": "hello", "dimensions": 3}).get_json()
    assert close_to(body["data"][0]["embedding"], expected("hello", 3))


def test_it_returns_400_naming_dimensions_when_larger_than_the_model(client):
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": "hi", "dimensions": FAKE_EMBED_DIM + 1})
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "dimensions"
    assert str(FAKE_EMBED_DIM) in response.get_json()["error"]["message"]


def test_it_returns_400_naming_encoding_format_when_unknown(client):
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": "hi", "encoding_format": "int8"})
    assert response.status_code == 400
    assert response.get_json()["error"]["param"] == "encoding_format"


def test_it_returns_400_naming_input_when_empty_or_missing(client):
    for body in ({"model": "tiny", "input": ""}, {"model": "tiny", "input": []}, {"model": "tiny"},
                 {"model": "tiny", "input": ["ok", ""]}, {"model": "tiny", "input": [1, "a"]}):
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["error"]["param"].startswith("input"), body


def test_openai_over_long_input_is_a_400_never_truncated(client):
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": "x" * 65})
    assert response.status_code == 400
    assert "input length exceeds the context length" in response.get_json()["error"]["message"]


def test_openai_token_id_outside_the_vocabulary_is_a_400(client):
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": [0x110000]})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "input"


def test_an_unknown_model_is_a_404_in_openai_shape(client):
    response = client.post("/v1/embeddings", json={"model": "nope", "input": "hi"})
    assert response.status_code == 404 and "error" in response.get_json()


def test_ten_inputs_take_three_decodes_of_at_most_four(client, fake_backend):
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": [f"t{i}" for i in range(10)]})
    model = fake_backend.loaded[0]
    assert model.embed_decodes == 3 and response.headers["X-Embedding-Decodes"] == "3"
    assert [len(batch) for batch in model.embed_batches] == [4, 4, 2]
    assert [b for batch in model.embed_batches for b in batch] == [[ord(c) for c in f"t{i}"] for i in range(10)]


def test_a_decode_never_holds_more_tokens_than_the_embedding_context(client, fake_backend):
    client.post("/v1/embeddings", json={"model": "tiny", "input": ["a" * 40, "b" * 30, "c" * 20]})
    assert [sum(map(len, batch)) for batch in fake_backend.loaded[0].embed_batches] == [40, 50]


def test_ollama_embed_has_ollama_shape_and_durations(client):
    response = client.post("/api/embed", json={"model": "tiny", "input": ["one", "two"]})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"]
    assert body["model"] == "tiny" and body["prompt_eval_count"] == 6
    assert close_to(body["embeddings"][0], expected("one")) and close_to(body["embeddings"][1], expected("two"))
    assert body["total_duration"] >= body["load_duration"] >= 0


def test_ollama_embed_truncates_by_default_and_refuses_when_told_not_to(client):
    cut = client.post("/api/embed", json={"model": "tiny", "input": "y" * 100})
    assert cut.status_code == 200 and cut.get_json()["prompt_eval_count"] == 64
    refused = client.post("/api/embed", json={"model": "tiny", "input": "y" * 100, "truncate": False})
    assert refused.status_code == 400
    assert refused.get_json()["error"].startswith("input length exceeds the context length")


def test_ollama_num_ctx_lowers_the_truncation_point(client):
    body = client.post("/api/embed", json={"model": "tiny", "input": "z" * 50, "options": {"num_ctx": 10}}).get_json()
    assert body["prompt_eval_count"] == 10


def test_ollama_embed_dimensions_and_its_400(client):
    body = client.post("/api/embed", json={"model": "tiny", "input": "hello", "dimensions": 2}).get_json()
    assert close_to(body["embeddings"][0], expected("hello", 2))
    for bad in (0, FAKE_EMBED_DIM + 1):
        response = client.post("/api/embed", json={"model": "tiny", "input": "hello", "dimensions": bad})
        assert response.status_code == 400 and "dimensions" in response.get_json()["error"]


def test_ollama_embed_without_input_only_loads(client, fake_backend):
    body = client.post("/api/embed", json={"model": "tiny"}).get_json()
    assert body == {"model": "tiny", "embeddings": []}
    assert len(fake_backend.loaded) == 1 and fake_backend.loaded[0].embed_decodes == 0


def test_ollama_embed_rejects_a_non_string_input_item(client):
    response = client.post("/api/embed", json={"model": "tiny", "input": ["ok", 3]})
    assert response.status_code == 400 and "input" in response.get_json()["error"]


def test_ollama_keep_alive_zero_unloads_after_embedding(client, fake_backend):
    response = client.post("/api/embed", json={"model": "tiny", "input": "hi", "keep_alive": 0})
    assert response.status_code == 200
    assert fake_backend.loaded[0].closed


def test_legacy_embeddings_returns_one_embedding(client):
    body = client.post("/api/embeddings", json={"model": "tiny", "prompt": "hello"}).get_json()
    assert close_to(body["embedding"], expected("hello"))
    assert client.post("/api/embeddings", json={"model": "tiny", "prompt": ""}).get_json() == {"embedding": []}


def test_embedding_requests_leave_a_record_each(client):
    client.post("/v1/embeddings", json={"model": "tiny", "input": "hi"})
    client.post("/v1/embeddings", json={"model": "tiny", "input": "hi", "dimensions": 99})
    records, _ = client.application.extensions[EXTENSION_KEY].engine.records.since(0)
    mine = [r for r in records if r.endpoint == "/v1/embeddings"]
    assert [(r.outcome, r.dialect, r.prompt_tokens) for r in mine] == [("done", "openai", 2), ("rejected", "openai", 0)]
