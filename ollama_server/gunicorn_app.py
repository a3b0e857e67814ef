"""Runs gunicorn in-process with config/gunicorn.conf.py, as `gunicorn -c config/gunicorn.conf.py` would."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication

from ollama_server import paths

GUNICORN_CONF = paths.CONFIG_DIR / "gunicorn.conf.py"


class ServiceApplication(BaseApplication):
    """gunicorn application whose whole configuration comes from the project's gunicorn.conf.py."""

    def load_config(self) -> None:
        self.load_config_from_file(str(GUNICORN_CONF))

    def load(self):
        from ollama_server import create_app
        return create_app()


def run() -> int:
    ServiceApplication().run()
    return 0
