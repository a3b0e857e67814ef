"""ConnectionWatch: one thread that notices when clients hang up, so their work can stop at once.

A non-streaming request writes nothing until it is done, and a queued stream writes nothing until it
starts, so a failed write cannot tell us the client left. epoll reports the peer's hang-up (RDHUP/HUP)
without reading from the socket, whatever request bytes are still buffered.
"""
from __future__ import annotations

import itertools
import logging
import select
import socket
import threading
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)
_HANGUP = getattr(select, "EPOLLRDHUP", 0x2000) | select.EPOLLHUP | select.EPOLLERR if hasattr(select, "epoll") else 0


class ConnectionWatch:
    """Calls `on_hangup` once when a watched socket's peer closes; started on first use, never on import."""

    def __init__(self, poll_s: float = 0.2):
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._epoll = None
        self._thread: Optional[threading.Thread] = None
        self._by_fd: dict[int, tuple[int, Callable[[], None]]] = {}
        self._tokens = itertools.count(1)
        self._closed = False

    @property
    def supported(self) -> bool:
        return bool(_HANGUP)

    def watch(self, sock: socket.socket, on_hangup: Callable[[], None]) -> Optional[int]:
        """Start watching; returns a token for unwatch(), or None when this platform cannot watch."""
        if not self.supported or self._closed:
            return None
        try:
            fd = sock.fileno()
        except OSError:
            return None
        with self._lock:
            self._start()
            token = next(self._tokens)
            try:
                self._epoll.register(fd, _HANGUP)
            except FileExistsError:  # a socket of the same number still registered: take its place
                self._epoll.modify(fd, _HANGUP)
            except OSError:
                return None
            self._by_fd[fd] = (token, on_hangup)
        return token

    def unwatch(self, token: Optional[int]) -> None:
        """Stop watching; called before the server closes or reuses the socket."""
        if token is None:
            return
        with self._lock:
            for fd, (held, _) in list(self._by_fd.items()):
                if held == token:
                    self._forget(fd)

    def _forget(self, fd: int) -> None:
        del self._by_fd[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel dropped it from the set

    def _start(self) -> None:
        if self._thread is None:
            self._epoll = select.epoll()
            self._thread = threading.Thread(target=self._run, name="connection-watch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                events = self._epoll.poll(self.poll_s)
            except (OSError, ValueError):
                return  # closed under us
            callbacks = []
            with self._lock:
                for fd, _ in events:
                    held = self._by_fd.get(fd)
                    if held is not None:
                        callbacks.append(held[1])
                        self._forget(fd)  # once per hang-up
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("hang-up callback failed")

    def close(self) -> None:
        """Stop the thread; watched callbacks are dropped."""
        self._closed = True
        with self._lock:
            if self._epoll is not None:
                self._by_fd.clear()
        if self._thread is not None:
            self._thread.join(2 * self.poll_s + 1)
            self._epoll.close()
