"""SIGTERM with a dashboard open: the progress websocket is closed by the server (a close frame), so the
graceful stop waits for requests, not for browsers that never hang up."""
from __future__ import annotations

import signal

import pytest
import simple_websocket

from tests.conftest import LiveServer

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
