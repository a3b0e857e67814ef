"""Where the service finds its own files (config, templates) relative to the checkout."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
EXAMPLE_CONFIG = CONFIG_DIR / "service_config.example.yaml"
DEFAULT_CONFIG = CONFIG_DIR / "service_config.yaml"


def service_config_path() -> Path:
    """$OLLAMA_SERVER_CONFIG, else config/service_config.yaml (copied from the example on first run)."""
    explicit = os.environ.get("OLLAMA_SERVER_CONFIG")
    if explicit:
        return Path(explicit)
    if not DEFAULT_CONFIG.exists() and EXAMPLE_CONFIG.exists():
        shutil.copyfile(EXAMPLE_CONFIG, DEFAULT_CONFIG)
    return DEFAULT_CONFIG
