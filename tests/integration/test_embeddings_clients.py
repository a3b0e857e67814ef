"""Embeddings through the official `openai` and `ollama` clients against the real server and Gemma 3 270M."""
from __future__ import annotations

import math

import numpy as np
import ollama
import openai
import pytest

pytestmark = pytest.mark.model

MODEL = "gemma3:270m"
TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten rests on a rug."]


@pytest.fixture(scope="module")
def oai(live_server):
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", timeout=300)


@pytest.fixture(scope="module")
def oll(live_server):
    return ollama.Client(host=live_server.url, timeout=300)


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_openai_float_and_base64_give_the_same_unit_vectors_in_order(oai):
    floats = oai.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    packed = oai.embeddings.create(model=MODEL, input=TEXTS)  # the SDK asks for base64 and decodes it
    assert [d.index for d in floats.data] == [0, 1, 2] and [d.index for d in packed.data] == [0, 1, 2]
    for a, b in zip(floats.data, packed.data):
        assert len(a.embedding) == 640
        assert math.isclose(float(np.linalg.norm(a.embedding)), 1.0, rel_tol=1e-4)
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)  # same text, same batch: same vector
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 3 * 3


def test_openai_dimensions_returns_renormalized_prefixes(oai):
    cut = oai.embeddings.create(model=MODEL, input=TEXTS[0], dimensions=64, encoding_format="float")
    vector = cut.data[0].embedding
    assert len(vector) == 64 and math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-4)
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        oai.embeddings.create(model=MODEL, input=TEXTS[0], dimensions=641)


def test_ollama_embed_keeps_order_and_same_text_gives_the_same_vector(oll):
    first = oll.embed(model=MODEL, input=TEXTS)
    again = oll.embed(model=MODEL, input=[TEXTS[2], TEXTS[0], TEXTS[1]])
    assert len(first.embeddings) == 3 and first.prompt_eval_count > 9
    # Batched with different neighbours: llama.cpp's kernels differ slightly by batch shape, not by meaning.
    assert cosine(first.embeddings[0], again.embeddings[1]) > 0.999
    assert cosine(first.embeddings[2], again.embeddings[0]) > 0.999
    for vector in first.embeddings:
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-4)
    assert cosine(first.embeddings[0], first.embeddings[2]) > cosine(first.embeddings[0], first.embeddings[1])


def test_a_batch_of_32_takes_fewer_decodes_than_inputs(oai):
    texts = [f"sentence number {i}" for i in range(32)]
    raw = oai.embeddings.with_raw_response.create(model=MODEL, input=texts, encoding_format="float")
    decodes = int(raw.headers["X-Embedding-Decodes"])
    assert 1 <= decodes < 32
    assert len(raw.parse().data) == 32


def test_ollama_truncate_false_refuses_an_over_long_input(oll):
    with pytest.raises(ollama.ResponseError, match="input length exceeds the context length"):
        oll.embed(model=MODEL, input="word " * 2000, truncate=False)
    cut = oll.embed(model=MODEL, input="word " * 2000)
    assert cut.prompt_eval_count == 512 and len(cut.embeddings[0]) == 640
