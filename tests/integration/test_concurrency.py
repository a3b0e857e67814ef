"""Concurrency on the real model: 8 streams at once without cross-talk, disconnects, busy answers, SIGTERM."""
import json
import signal
import socket
import threading

import pytest
import requests

from tests.conftest import LiveServer
from tests.waiting import wait_for

pytestmark = pytest.mark.model
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
ALPHABET = "A, B, C, D, E, F, G, H,"


@pytest.fixture(scope="module")
def batched_server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("batched"),
                    {"parallel_slots": 8, "default_context_size": 512, "max_queue": 8}) as server:
        yield server


@pytest.fixture(scope="module")
def serial_server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("serial"),
                    {"parallel_slots": 1, "default_context_size": 512, "max_queue": 1}) as server:
        yield server


def stream_completion(url: str, prompt: str, max_tokens: int) -> str:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    text = []
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                text.append(json.loads(line[6:])["choices"][0]["text"])
    return "".join(text)


def test_eight_concurrent_streams_keep_to_their_own_prompts(batched_server):
    prompts = [COUNTING, ALPHABET] * 4
    outputs = [None] * len(prompts)

    def run(i):
        outputs[i] = stream_completion(batched_server.url, prompts[i], 10)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for prompt, output in zip(prompts, outputs):
        assert output, f"no output for {prompt!r}"
        if prompt is COUNTING:
            assert "9" in output and not any(letter in output for letter in "IJK"), output
        else:
            assert "I" in output and not any(digit in output for digit in "9"), output
    # Copies of one prompt need not agree bit for bit: they joined the batch at different steps, and
    # llama.cpp's batched kernels change floating-point order with the batch's make-up.


def waiting(url: str) -> int:
    """Requests queued for a slot, from /health."""
    return requests.get(url + "/health", timeout=30).json()["components"]["executor"]["waiting"]


def test_a_client_that_disconnects_frees_its_slot(serial_server):
    url = serial_server.url
    body = {"prompt": "Once upon a time", "max_tokens": 400, "stream": True, "ignore_eos": True}
    first = requests.post(url + "/v1/completions", json=body, stream=True, timeout=60)
    request_id = first.headers["X-Request-Id"]
    lines = first.iter_lines()
    next(line for line in lines if line.startswith(b"data: {"))  # it is decoding
    result = {}

    def queued():
        result["body"] = requests.post(url + "/v1/completions", timeout=120, json={
            "prompt": "Hi", "max_tokens": 3, "temperature": 0}).json()
    waiter = threading.Thread(target=queued)
    waiter.start()
    wait_for(lambda: waiting(url) >= 1, "the second request to queue behind the first", 60)
    first.close()  # the client goes away mid-stream
    waiter.join(120)
    assert result["body"]["choices"][0]["text"] is not None
    # The slot was freed by the hang-up, not by the first request running its 400 tokens out.
    progress = requests.get(url + f"/api/progress/{request_id}", timeout=10).json()
    assert progress["state"] == "cancelled"
    assert progress["tokens_generated"] < 400


def test_a_full_queue_answers_busy_at_once_in_every_dialect(serial_server):
    url = serial_server.url
    hold = {"prompt": "Once upon a time", "max_tokens": 300, "stream": True, "ignore_eos": True}
    running = requests.post(url + "/v1/completions", json=hold, stream=True, timeout=60)
    # Keep the line iterator: a temporary one, once garbage-collected, closes the connection, and the
    # server then (rightly) cancels the request that is meant to hold the slot.
    running_lines = running.iter_lines()
    next(line for line in running_lines if line.startswith(b"data: {"))
    # fills the queue; its headers only come once it runs, so it is sent from a thread
    waiter = threading.Thread(target=lambda: requests.post(url + "/v1/completions", timeout=60, json={
        "prompt": "x", "max_tokens": 1}))
    waiter.start()
    try:
        wait_for(lambda: waiting(url) >= 1, "the queue to fill", 60)
        answers = {}
        answers["openai"] = requests.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=60)
        answers["vllm"] = requests.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "top_k": 5})
        answers["ollama"] = requests.post(url + "/api/generate", json={"model": "gemma3:270m", "prompt": "x",
                                                                       "stream": False}, timeout=60)
        answers["tgi"] = requests.post(url + "/generate", json={"inputs": "x"}, timeout=60)
        # At once: all four were answered while the request holding the slot still runs (300 tokens).
        assert requests.get(url + f"/api/progress/{running.headers['X-Request-Id']}", timeout=60).json()[
            "state"] == "running"
    finally:
        running.close()
        waiter.join(60)
    assert answers["openai"].status_code == 429 and "Retry-After" in answers["openai"].headers
    assert answers["openai"].json()["error"]["type"] == "rate_limit_error"
    assert answers["vllm"].status_code == 429
    assert answers["ollama"].status_code == 503
    assert answers["ollama"].json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    assert answers["tgi"].status_code == 429
    assert answers["tgi"].json()["error_type"] == "overloaded"


def refused(port: int) -> bool:
    """True when a TCP connection to the port is refused (nothing listens there)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def sigterm_mid_stream_lets_it_finish(server: LiveServer, tokens: int = 40) -> None:
    """Start a stream, SIGTERM the server once it is under way: the stream runs to its full length, then the
    server exits cleanly."""
    body = {"prompt": "Once upon a time", "max_tokens": tokens, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    response = requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60)
    lines = response.iter_lines()  # kept: the stream's own iterator, read to its end below
    next(line for line in lines if line.startswith(b"data: {"))
    server.process.send_signal(signal.SIGTERM)
    rest = [line for line in lines if line.startswith(b"data:")]
    assert rest[-1] == b"data: [DONE]", rest[-3:]
    assert json.loads(rest[-2][6:])["usage"]["completion_tokens"] == tokens
    assert server.process.wait(timeout=60) == 0


def test_sigterm_lets_the_running_stream_finish_then_exits(tmp_path):
    with LiveServer(tmp_path, {"default_context_size": 512}) as server:
        sigterm_mid_stream_lets_it_finish(server)
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/health", timeout=2)



def test_a_draining_server_refuses_new_connections_while_its_stream_still_runs(tmp_path):
    """A connection made during the graceful stop is refused at once (a load balancer passes it on), not left
    unaccepted in the backlog and reset when the worker exits."""
    with LiveServer(tmp_path, {"default_context_size": 512}) as server:
        body = {"prompt": "Once upon a time", "max_tokens": 300, "stream": True, "ignore_eos": True}
        response = requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=60)
        lines = response.iter_lines()  # kept: the stream's own iterator, read to its end by the reader
        events: list[bytes] = []
        reader = threading.Thread(target=lambda: events.extend(line for line in lines if line.startswith(b"data:")))
        reader.start()
        wait_for(lambda: len(events) >= 2, "the stream to be under way", 60)
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(server.port), "new connections to be refused", 60)
        at_refusal = len(events)
        reader.join(120)
        assert events[-1] == b"data: [DONE]"
        # Refused while the stream still ran: most of its 300 tokens came after.
        assert len(events) - at_refusal > 100, (at_refusal, len(events))
        assert server.process.wait(timeout=60) == 0
