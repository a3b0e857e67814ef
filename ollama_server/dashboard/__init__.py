"""The dashboard: seven server-rendered htmx pages under /dashboard (templates/, static/), registered by
create_app() and imported by nothing else."""
from __future__ import annotations

from flask import Flask


def register_dashboard(app: Flask) -> None:
    """Register the blueprint with every page, fragment, action, export and the progress socket."""
    from ollama_server.dashboard import alert_actions  # noqa: F401  (each module adds its routes to bp)
    from ollama_server.dashboard import apis  # noqa: F401
    from ollama_server.dashboard import assets  # noqa: F401
    from ollama_server.dashboard import config  # noqa: F401
    from ollama_server.dashboard import export  # noqa: F401
    from ollama_server.dashboard import layout
    from ollama_server.dashboard import gpu  # noqa: F401
    from ollama_server.dashboard import jobs  # noqa: F401
    from ollama_server.dashboard import live  # noqa: F401
    from ollama_server.dashboard import models  # noqa: F401
    from ollama_server.dashboard import optimization  # noqa: F401
    from ollama_server.dashboard import overview  # noqa: F401
    from ollama_server.dashboard import session_auth
    from ollama_server.dashboard.blueprint import bp

    session_auth.init_app(app)
    layout.init_app(app)
    app.register_blueprint(bp)
