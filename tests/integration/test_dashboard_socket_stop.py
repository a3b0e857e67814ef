"""SIGTERM with a dashboard open: the progress websocket is closed by the server (a close frame), so the
graceful stop waits for requests, not for browsers that never hang up."""
from __future__ import annotations

import signal

import pytest
import simple_websocket

from tests.conftest import LiveServer
from tests.integration.test_concurrency import sigterm_mid_stream_lets_it_finish

pytestmark = pytest.mark.model


def test_sigterm_closes_the_progress_socket_with_a_close_frame(tmp_path):
    with LiveServer(tmp_path, {"default_context_size": 512}) as server:
        ws = simple_websocket.Client.connect(server.url.replace("http://", "ws://") + "/dashboard/ws/progress")
        try:
            first = ws.receive(timeout=30)
            assert 'id="active-requests"' in first
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(simple_websocket.ConnectionClosed) as closed:
                while True:
                    ws.receive(timeout=60)
            assert closed.value.reason == 1000  # the server's own close, not a dropped connection
        finally:
            if ws.connected:
                ws.close()
        assert server.process.wait(timeout=60) == 0


def test_a_stream_still_finishes_on_sigterm_after_a_websocket_has_come_and_gone(tmp_path):
    """A closed progress socket once made gunicorn count its connection as gone twice (the websocket closed the
    socket, then gunicorn failed closing it again): the graceful stop then saw no request running and cut the
    stream ("model was unloaded while the request ran")."""
    with LiveServer(tmp_path, {"default_context_size": 512}) as server:
        ws = simple_websocket.Client.connect(server.url.replace("http://", "ws://") + "/dashboard/ws/progress")
        assert 'id="active-requests"' in ws.receive(timeout=30)
        ws.close()
        ws.thread.join(timeout=60)  # a failure guard: the client's reader ends when the server closes its side
        assert not ws.thread.is_alive()
        sigterm_mid_stream_lets_it_finish(server)
