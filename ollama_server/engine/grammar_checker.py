"""GrammarChecker: builds each grammar first in a child process, so that one that crashes llama.cpp (its
parser recurses once per nesting level) or exhausts memory takes down the child, never the server."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

# The child runs llama_backend.check_grammars_forever: that module stays the only one importing llama_cpp.
CHILD_CODE = ("from ollama_server.engine.llama_backend import check_grammars_forever; "
              "check_grammars_forever({memory})")


class GrammarChecker:
    """One child process, started on first use and again after it dies; grammars go through it one at a time."""

    def __init__(self, timeout_s: float = 10.0, memory_bytes: int = 4 << 30):
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()  # one grammar at a time through the pipe
        self._child: Optional[subprocess.Popen] = None

    def check(self, grammar: str) -> Optional[str]:
        """None when llama.cpp builds the grammar, else why not."""
        payload = grammar.encode("utf-8")
        with self._lock:
            child = self._running_child()
            try:
                child.stdin.write(len(payload).to_bytes(8, "big") + payload)
                child.stdin.flush()
                ready, _, _ = select.select([child.stdout], [], [], self.timeout_s)
                reply = child.stdout.readline() if ready else b""
            except OSError:
                reply = b""
            if reply.startswith(b"ok"):
                return None
            if reply.startswith(b"error "):
                return reply[6:].decode("utf-8", "replace").strip()
            return self._failed(child, bool(ready))

    def _failed(self, child: subprocess.Popen, answered: bool) -> str:
        if not answered:
            child.kill()
        code = child.wait()
        self._child = None
        if not answered:
            return f"building the grammar took longer than {self.timeout_s:g} s; simplify the schema"
        cause = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        return f"llama.cpp failed while building this grammar ({cause}); it is too large or too deeply nested"

    def _running_child(self) -> subprocess.Popen:
        if self._child is None or self._child.poll() is not None:
            env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                os.environ.get("PYTHONPATH")]))}
            code = CHILD_CODE.format(memory=self.memory_bytes)
            self._child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        return self._child

    def close(self) -> None:
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                self._child.stdin.close()  # the child ends at end of input
                try:
                    self._child.wait(2)
                except subprocess.TimeoutExpired:
                    self._child.kill()
            self._child = None
