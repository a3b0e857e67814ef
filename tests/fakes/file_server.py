"""A real local HTTP file server for pull tests: Range requests, redirects, and a switch to drop connections."""
from __future__ import annotations

import os
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

SIZE = 3 * 1024 * 1024


def gguf_bytes(size: int = SIZE, seed: int = 1) -> bytes:
    """A GGUF header (architecture, file type) followed by random bytes up to `size`."""
    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value)) + value.encode()
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
    header += text("general.architecture") + struct.pack("<I", 8) + text("llama")
    header += text("general.file_type") + struct.pack("<II", 4, 15)
    return header + os.urandom(size - len(header)) if seed else header


class FileServer:
    """ThreadingHTTPServer on 127.0.0.1:0 serving one file with Range/If-Range, redirects and drops."""

    def __init__(self, data: bytes):
        self.data, self.etag = data, '"v1"'
        self.drop_after = None  # bytes of the body sent before the connection is cut
        self.stall_after = None  # bytes of the body sent before the server waits for `release`
        self.release = threading.Event()
        self.stalled = threading.Event()  # set once a body has stalled at stall_after
        self.requests: list[tuple[str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, dict(self.headers)))
                if self.path.startswith("/hop/"):
                    left = int(self.path.split("/")[2])
                    self._redirect("/model.gguf" if left == 0 else f"/hop/{left - 1}")
                elif self.path == "/to-metadata":
                    self._redirect("http://169.254.169.254/latest/meta-data/")
                elif self.path == "/page.html":
                    self._send(200, b"<html>not a model</html>" * 100, {})
                elif self.path.endswith(".gguf"):
                    self._file()
                else:
                    self._send(404, b"not found", {})

            def _redirect(self, location):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _file(self):
                data, start = owner.data, 0
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
                if match and self.headers.get("If-Range", owner.etag) == owner.etag:
                    start = int(match.group(1))
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
                    return self._send(206, data[start:], headers)
                self._send(200, data, {})

            def _send(self, status, body, headers):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", owner.etag)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if owner.stall_after is not None and status in (200, 206):
                    self.wfile.write(body[:owner.stall_after])
                    self.wfile.flush()
                    owner.stalled.set()
                    owner.release.wait(120)
                    body = body[owner.stall_after:]
                if owner.drop_after is not None and status in (200, 206):
                    self.wfile.write(body[:owner.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
