"""Active-request progress pushed over a websocket (flask-sock): the server sends the requests fragment
whenever it changes, so progress bars move without polling faster than the page's refresh."""
from __future__ import annotations

import logging

from flask import render_template
from flask import request
from flask_sock import ConnectionClosed
from flask_sock import Sock

from ollama_server.dashboard.blueprint import bp
from ollama_server.dashboard.fragments import version_of
from ollama_server.dashboard.overview import active_requests
from ollama_server.services import services

PUSH_INTERVAL_S = 0.5   # how often the socket looks for changed progress (a few tokens at 45 tokens/s)
IDLE_PING_S = 25.0      # keep idle sockets from being closed by proxies
log = logging.getLogger(__name__)
sock = Sock()  # routes on the dashboard blueprint: its login guard runs before the upgrade
SOCKET_PATH = "/ws/progress"
GUNICORN_SOCKET = "gunicorn.socket"
_DUPLICATED = "ollama_server.websocket_socket_duplicated"  # environ mark: one duplicate per request


@bp.before_request
def give_the_websocket_its_own_descriptor() -> None:
    """Hand the websocket a duplicate of the client socket to close when it ends.

    On the original, gunicorn's gthread worker would then fail its own close and count the connection as gone
    a second time; a graceful stop would think no request is running and cut live streams. The connection ends
    once both descriptors are closed."""
    original = request.environ.get(GUNICORN_SOCKET)
    if original is not None and request.path.endswith(SOCKET_PATH) and not request.environ.get(_DUPLICATED):
        request.environ[GUNICORN_SOCKET] = original.dup()
        request.environ[_DUPLICATED] = True


@sock.route(SOCKET_PATH, bp=bp)
def progress_socket(ws):
    """Send the active-requests fragment on connect and after each change; closes when the service stops."""
    svc = services()
    last, quiet = None, 0.0
    try:
        # Ends when the server begins to stop (SIGTERM) or the engine closes: a browser never hangs up.
        while not svc.stopping.is_set() and not svc.engine.snapshot().closing:
            rows = active_requests()
            version = version_of(rows)
            if version != last:
                ws.send(render_template("partials/requests.html", requests=rows))
                last, quiet = version, 0.0
            elif quiet >= IDLE_PING_S:
                ws.send("")  # an empty frame: htmx ignores it, the connection stays warm
                quiet = 0.0
            ws.receive(timeout=PUSH_INTERVAL_S)  # also notices the client closing
            quiet += PUSH_INTERVAL_S
    except ConnectionClosed:
        return
