"""Runs gunicorn in-process with config/gunicorn.conf.py, as `gunicorn -c config/gunicorn.conf.py` would."""
from __future__ import annotations

from gunicorn.app.base import Application

from ollama_server import paths

GUNICORN_CONF = paths.CONFIG_DIR / "gunicorn.conf.py"


class ServiceApplication(Application):
    """gunicorn application whose whole configuration comes from the project's gunicorn.conf.py."""

    def init(self, parser, opts, args):
        return None

    def load_config(self) -> None:
        # Only the project's file: our own CLI flags already travelled through the environment.
        self.load_config_from_file(str(GUNICORN_CONF))

    def load(self):
        from ollama_server import create_app
        return create_app()


def run() -> int:
    ServiceApplication().run()
    return 0
