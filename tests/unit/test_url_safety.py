"""The SSRF guard: address classes, URL checks (no DNS for literals), and the connect-time peer check."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
import requests

from ollama_server.models.url_safety import REFUSAL
from ollama_server.models.url_safety import PublicOnlyAdapter
from ollama_server.models.url_safety import UnsafeURL
from ollama_server.models.url_safety import blocked_reason
from ollama_server.models.url_safety import check_url
from ollama_server.models.url_safety import refusal_in


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
])
def test_non_public_addresses_are_blocked(address, reason):
    assert blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1",
                                     "64:ff9b::a9fe:a9fe", "2001:0:4136:e378:8000:63bf:80ff:fffe"])
def test_ipv6_forms_of_ipv4_addresses_are_blocked(address):
    assert blocked_reason(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e"])
def test_public_addresses_pass(address):
    assert blocked_reason(address) is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/m.gguf", "http://10.0.0.1:8080/m.gguf", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:11434/m.gguf", "https://[fe80::1]/m.gguf", "http://2130706433/m.gguf", "http://127.1/m.gguf",
    "http://0x7f000001/m.gguf", "http://localhost/m.gguf", "http://user@127.0.0.1/m.gguf",
    "http://[::ffff:10.0.0.1]/m.gguf",
])
def test_urls_to_private_hosts_are_refused(url):
    with pytest.raises(UnsafeURL, match=r"^refusing to pull from a private or loopback address \("):
        check_url(url)


def test_private_hosts_pass_when_allowed_and_public_literals_always():
    check_url("http://127.0.0.1:8000/m.gguf", allow_private=True)
    check_url("https://8.8.8.8/m.gguf")
    check_url("https://[2606:4700:4700::1111]/m.gguf")


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "unsupported URL scheme"), ("ftp://example.com/m.gguf", "unsupported URL scheme"),
    ("gopher://127.0.0.1/", "unsupported URL scheme"), ("http:///m.gguf", "has no host"),
    ("http://example.com:99999/m.gguf", "invalid URL"),
])
def test_malformed_or_other_scheme_urls_are_refused_even_when_private_is_allowed(url, message):
    with pytest.raises(UnsafeURL, match=message):
        check_url(url, allow_private=True)


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def test_the_adapter_refuses_a_loopback_peer_before_sending_the_request():
    """What defeats DNS rebinding: the address actually connected to is checked, whatever DNS said before."""
    _Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/m.gguf"
    try:
        assert requests.get(url, timeout=5).text == "ok"  # the server works
        session = requests.Session()
        session.mount("http://", PublicOnlyAdapter(max_retries=0))
        with pytest.raises(requests.ConnectionError) as caught:
            session.get(url, timeout=5)
        assert refusal_in(caught.value) == f"{REFUSAL} (127.0.0.1 connected to 127.0.0.1, loopback)"
        assert _Recorder.seen == ["/m.gguf"]  # only the plain request above reached it
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_refusal_in_ignores_other_connection_errors():
    assert refusal_in(requests.ConnectionError("connection refused")) is None
