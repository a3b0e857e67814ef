"""`python -m ollama_server [--host H] [--port P] [--config FILE]`: serve with gunicorn (or --dev: werkzeug)."""
from __future__ import annotations

import argparse
import os
import sys

from ollama_server import paths
from ollama_server.settings import SettingsError
from ollama_server.settings import load_settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ollama_server", description=__doc__)
    parser.add_argument("--host", help="address to bind (default from settings: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default from settings: 11435)")
    parser.add_argument("--config", help="service settings YAML (default config/service_config.yaml)")
    parser.add_argument("--dev", action="store_true", help="werkzeug's threaded server instead of gunicorn")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The worker builds its app from the environment, so the overrides travel there.
    if args.config:
        os.environ["OLLAMA_SERVER_CONFIG"] = os.path.abspath(args.config)
    if args.host:
        os.environ["OLLAMA_SERVER_HOST"] = args.host
    if args.port:
        os.environ["OLLAMA_SERVER_PORT"] = str(args.port)
    try:
        settings = load_settings(paths.service_config_path())
    except SettingsError as exc:
        print(f"ollama_server: {exc}", file=sys.stderr)
        return 2
    if args.dev:
        from ollama_server.dev_server import serve
        return serve(settings)
    from ollama_server.gunicorn_app import run
    return run()


if __name__ == "__main__":
    sys.exit(main())
