"""Clients that hang up before their answer: the slot (or the queue place) is freed at once, in every dialect."""
import json
import socket
import time

import pytest
import requests

from tests.conftest import LiveServer

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def one_slot_server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("abandoned"),
                    {"parallel_slots": 1, "default_context_size": 4096, "max_queue": 4}) as server:
        yield server


def send_and_hold(url: str, path: str, body: dict, request_id: str) -> socket.socket:
    """Send a POST over a raw socket and return it unread, as a client that will hang up."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                 f"X-Request-Id: {request_id}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    return sock


def state_of(url: str, request_id: str) -> dict:
    response = requests.get(f"{url}/api/progress/{request_id}", timeout=10)
    return response.json() if response.status_code == 200 else {"state": "unknown"}


def wait_for(url: str, request_id: str, check, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        progress = state_of(url, request_id)
        if check(progress):
            return progress
        assert time.monotonic() < deadline, f"{request_id} never got there: {progress}"
        time.sleep(0.05)


ABANDONED = [
    ("/api/generate", {"model": "gemma3:270m", "prompt": "Once upon a time", "stream": False,
                       "options": {"temperature": 0}}),
    ("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": True}),
    ("/generate", {"inputs": "Once upon a time", "parameters": {"max_new_tokens": 3000}}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell a long story"}],
                              "max_tokens": 3000, "stream": True, "ignore_eos": True}),
]


@pytest.mark.parametrize("path, body", ABANDONED, ids=[path for path, _ in ABANDONED])
def test_it_cancels_a_running_request_whose_client_hangs_up(one_slot_server, path, body):
    url = one_slot_server.url
    request_id = "abandoned" + path.replace("/", "-")
    sock = send_and_hold(url, path, body, request_id)
    wait_for(url, request_id, lambda p: p["state"] == "running" and p["tokens_generated"] > 0)
    sock.close()
    done = wait_for(url, request_id, lambda p: p["state"] not in ("queued", "running"))
    assert done["state"] == "cancelled"
    assert done["tokens_generated"] < done["max_tokens"]
    # the slot is free again: a new request runs straight away
    answer = requests.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert answer.status_code == 200


def test_it_drops_a_queued_request_whose_client_hangs_up(one_slot_server):
    url = one_slot_server.url
    holder = send_and_hold(url, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3000,
                                                    "ignore_eos": True}, "holds-the-slot")
    try:
        wait_for(url, "holds-the-slot", lambda p: p["state"] == "running")
        queued = send_and_hold(url, "/api/generate", {"model": "gemma3:270m", "prompt": "Hi", "stream": False},
                               "waits-in-line")
        wait_for(url, "waits-in-line", lambda p: p["state"] == "queued")
        queued.close()
        # dropped from the queue while the slot is still busy, not when it would have started
        assert wait_for(url, "waits-in-line", lambda p: p["state"] != "queued")["state"] == "cancelled"
        assert state_of(url, "holds-the-slot")["state"] == "running"
    finally:
        holder.close()
    wait_for(url, "holds-the-slot", lambda p: p["state"] == "cancelled")


def test_a_client_named_request_can_be_dismissed_while_it_waits(one_slot_server):
    url = one_slot_server.url
    sock = send_and_hold(url, "/api/generate", {"model": "gemma3:270m", "prompt": "Once upon a time",
                                                "stream": False}, "dismiss-me")
    try:
        wait_for(url, "dismiss-me", lambda p: p["state"] == "running")
        dismissed = requests.post(url + "/api/dismiss/dismiss-me", timeout=10).json()
        assert dismissed["cancelled"] is True
        sock.settimeout(60)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"X-Request-Id: dismiss-me" in head
        assert json.loads(body)["done_reason"] == "cancelled"
    finally:
        sock.close()


def test_a_request_id_still_running_cannot_be_reused(one_slot_server):
    url = one_slot_server.url
    sock = send_and_hold(url, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3000,
                                                  "ignore_eos": True}, "only-once")
    try:
        wait_for(url, "only-once", lambda p: p["state"] == "running")
        again = requests.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}, timeout=30,
                              headers={"X-Request-Id": "only-once"})
        assert again.status_code == 400 and again.json()["error"]["param"] == "X-Request-Id"
        bad = requests.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}, timeout=30,
                            headers={"X-Request-Id": "no spaces/or slashes"})
        assert bad.status_code == 400
    finally:
        sock.close()
    wait_for(url, "only-once", lambda p: p["state"] == "cancelled")
