"""Active-request progress pushed over a websocket (flask-sock): the server sends the requests fragment
whenever it changes, so progress bars move without polling faster than the page's refresh."""
from __future__ import annotations

import logging

from flask import render_template
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


@sock.route("/ws/progress", bp=bp)
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
