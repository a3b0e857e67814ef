"""Development server: the same app on werkzeug's threaded server, with a clean SIGTERM."""
from __future__ import annotations

import signal

from werkzeug.serving import make_server

from ollama_server.settings import Settings


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(settings: Settings) -> int:
    from ollama_server import create_app
    from ollama_server.services import EXTENSION_KEY

    app = create_app()
    svc = app.extensions[EXTENSION_KEY]
    server = make_server(settings.host, settings.port, app, threaded=True)
    signal.signal(signal.SIGTERM, _interrupt)
    svc.start()
    signal.signal(signal.SIGHUP, svc.reloader.reload_in_background)  # re-read the settings file
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        svc.close()
    return 0
