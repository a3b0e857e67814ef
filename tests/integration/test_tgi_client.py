"""The official huggingface_hub InferenceClient against the real server and the real Gemma model (TGI dialect)."""
from __future__ import annotations

import pytest
import requests
from huggingface_hub import InferenceClient
from huggingface_hub import TextGenerationOutput
from huggingface_hub import TextGenerationStreamOutput
from huggingface_hub.errors import ValidationError

pytestmark = pytest.mark.model
PROMPT = "The capital of France is"
FINISH_REASONS = ("length", "eos_token", "stop_sequence")


@pytest.fixture(scope="module")
def hf(live_server):
    return InferenceClient(base_url=live_server.url, timeout=120)


def test_streamed_details_end_with_a_tgi_finish_reason(hf):
    events = list(hf.text_generation(PROMPT, max_new_tokens=8, stream=True, details=True))
    assert events and all(isinstance(e, TextGenerationStreamOutput) for e in events)
    assert [e.index for e in events] == list(range(1, len(events) + 1))
    assert all(e.generated_text is None and e.details is None for e in events[:-1])
    last = events[-1]
    assert last.details.finish_reason in FINISH_REASONS
    assert last.details.generated_tokens == len(events) <= 8
    assert last.details.input_length > 3
    assert last.generated_text.strip()


def test_streamed_text_pieces_make_the_generated_text(hf):
    pieces = list(hf.text_generation(PROMPT, max_new_tokens=6, stream=True))
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip()


def test_non_streamed_details_count_the_tokens(hf):
    output = hf.text_generation(PROMPT, max_new_tokens=8, details=True)
    assert isinstance(output, TextGenerationOutput)
    assert output.generated_text.strip()
    assert 0 < output.details.generated_tokens <= 8
    assert output.details.finish_reason in FINISH_REASONS
    assert len(output.details.tokens) == output.details.generated_tokens


def test_greedy_decoding_is_deterministic(hf):
    first = hf.text_generation(PROMPT, max_new_tokens=6)
    assert isinstance(first, str) and first.strip()
    assert hf.text_generation(PROMPT, max_new_tokens=6) == first


def test_max_new_tokens_is_a_length_finish(hf):
    output = hf.text_generation("Count: 1, 2, 3,", max_new_tokens=3, details=True)
    assert output.details.finish_reason == "length" and output.details.generated_tokens == 3


def test_invalid_parameters_raise_the_clients_validation_error(hf):
    with pytest.raises(ValidationError, match="temperature"):
        hf.text_generation(PROMPT, max_new_tokens=4, temperature=0.0)


def test_generate_stream_is_raw_tgi_sse(live_server):
    response = requests.post(live_server.url + "/generate_stream", timeout=120, json={
        "inputs": PROMPT, "parameters": {"max_new_tokens": 4, "details": True}})
    assert response.status_code == 200
    lines = [line for line in response.text.split("\n") if line]
    assert lines and all(line.startswith("data:{") for line in lines)
    assert "[DONE]" not in response.text


def test_info_reports_the_default_model(live_server):
    response = requests.get(live_server.url + "/info", timeout=30)
    assert response.status_code == 200
    info = response.json()
    assert info["model_id"] == "gemma3:270m"
    assert info["model_pipeline_tag"] == "text-generation"
    assert info["max_total_tokens"] == 1024 and info["max_input_tokens"] < info["max_total_tokens"]
    assert info["max_concurrent_requests"] >= 1 + 8
    assert info["max_best_of"] == 1 and info["max_stop_sequences"] == 4
    assert info["router"] == "text-generation-router" and info["version"]
    assert info["model_dtype"] == "gguf" and info["sha"] is None and info["docker_label"] is None
