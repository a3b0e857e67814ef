"""The local LLM inference service: create_app() wires settings, services and the API blueprints."""
from __future__ import annotations

from typing import Any

from flask import Flask

from ollama_server import log_format
from ollama_server import paths
from ollama_server.settings import Settings
from ollama_server.settings import load_settings

__version__ = "0.1.0"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; reads settings, builds services, registers blueprints. Starts nothing."""
    from ollama_server.api import register_api
    from ollama_server.dashboard import register_dashboard
    from ollama_server.services import build_services
    from ollama_server.services import init_app

    test_config = test_config or {}
    settings: Settings = test_config.get("SETTINGS") or load_settings(
        paths.service_config_path(), overrides=test_config.get("SETTINGS_OVERRIDES"))
    log_format.install_console_handler(settings)  # JSON lines to stdout unless someone else set up logging
    app = Flask(__name__, template_folder=str(paths.ROOT / "templates"), static_folder=str(paths.ROOT / "static"))
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["TESTING"] = bool(test_config.get("TESTING"))
    # Tests replace llama.cpp (BACKEND) and pynvml (NVML) here, never by writing app.extensions afterwards.
    built = test_config.get("SERVICES") or build_services(settings, test_config.get("BACKEND"), test_config.get("NVML"))
    init_app(app, built)
    # From here on no log line shows a secret setting or an alert channel's password, URL or header value.
    log_format.configure_logging(built.settings, built.alerts.channels if built.alerts is not None else ())
    register_api(app)
    register_dashboard(app)
    return app
