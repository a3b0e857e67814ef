"""`python -m ollama_server.models.prepare`: assemble the default model ahead of the first start."""
from __future__ import annotations

import sys

from ollama_server import paths
from ollama_server.models.default_model import ensure_default_model
from ollama_server.settings import SettingsError
from ollama_server.settings import load_settings


def main() -> int:
    try:
        settings = load_settings(paths.service_config_path())
    except SettingsError as exc:
        print(f"ollama_server: {exc}", file=sys.stderr)
        return 2
    print(ensure_default_model(settings.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
