"""The same greedy request gives the same text through all four dialects, each with its own client."""
import huggingface_hub
import ollama
import openai
import pytest
import requests

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
TOKENS = 12


def test_temperature_zero_gives_the_same_text_in_every_dialect(live_server):
    sdk = openai.OpenAI(base_url=live_server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    via_openai = sdk.completions.create(model="gemma3:270m", prompt=PROMPT, max_tokens=TOKENS,
                                        temperature=0).choices[0].text
    via_vllm = sdk.completions.create(model="gemma3:270m", prompt=PROMPT, max_tokens=TOKENS, temperature=0,
                                      extra_body={"top_k": -1, "repetition_penalty": 1.0}).choices[0].text
    via_ollama = ollama.Client(host=live_server.url).generate(
        model="gemma3:270m", prompt=PROMPT, raw=True, options={"temperature": 0, "num_predict": TOKENS}).response
    via_tgi = huggingface_hub.InferenceClient(base_url=live_server.url).text_generation(
        PROMPT, max_new_tokens=TOKENS)
    via_tgi_http = requests.post(live_server.url + "/generate", timeout=120, json={
        "inputs": PROMPT, "parameters": {"max_new_tokens": TOKENS}}).json()["generated_text"]
    assert via_openai.strip()
    assert via_openai == via_vllm == via_ollama == via_tgi == via_tgi_http
