"""ConnectionWatch: a peer's hang-up calls back once; unwatched or reused sockets do not."""
import socket
import threading

from ollama_server.connection_watch import ConnectionWatch


def test_it_calls_back_once_when_the_peer_closes():
    watch = ConnectionWatch(poll_s=0.05)
    ours, theirs = socket.socketpair()
    fired = threading.Event()
    try:
        assert watch.watch(ours, fired.set) is not None
        theirs.sendall(b"GET / HTTP/1.1\r\n")  # buffered request bytes are not a hang-up
        assert not fired.wait(0.3)
        theirs.close()
        assert fired.wait(5)
    finally:
        ours.close()
        watch.close()


def test_an_unwatched_socket_never_calls_back():
    watch = ConnectionWatch(poll_s=0.05)
    ours, theirs = socket.socketpair()
    fired = threading.Event()
    try:
        watch.unwatch(watch.watch(ours, fired.set))
        theirs.close()
        assert not fired.wait(0.3)
    finally:
        ours.close()
        watch.close()


def test_a_reused_socket_number_is_watched_for_its_new_owner():
    watch = ConnectionWatch(poll_s=0.05)
    first, first_peer = socket.socketpair()
    watch.watch(first, lambda: None)
    first.close()  # closed without unwatch: the kernel forgets it, the map does not
    first_peer.close()
    second, second_peer = socket.socketpair()
    fired = threading.Event()
    try:
        assert watch.watch(second, fired.set) is not None
        second_peer.close()
        assert fired.wait(5)
    finally:
        second.close()
        watch.close()
