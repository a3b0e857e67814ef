"""Ollama-style model names: `name[:tag]`, tag `latest` by default, never a path."""
from __future__ import annotations

import re

# Each part becomes a directory or file name in a store: short enough for any filesystem.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}(/[a-z0-9][a-z0-9._-]{0,127}){0,2}")
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


class InvalidModelName(ValueError):
    """A model name that is not of the form name[:tag]."""


def normalize(name: str) -> str:
    """Lower-case `name[:tag]` with the tag filled in; rejects anything path-like."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidModelName("model name must be a non-empty string")
    text = name.strip().lower()
    base, _, tag = text.rpartition(":") if ":" in text else (text, "", "latest")
    tag = tag or "latest"
    if ".." in base or not _NAME.fullmatch(base) or not _TAG.fullmatch(tag):
        raise InvalidModelName(f"invalid model name {name!r}")
    return f"{base}:{tag}"


def from_filename(stem: str) -> str:
    """A model name for a .gguf file found in a directory."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem.lower())
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("-._")[:128].strip("-._") or "model"
    return f"{cleaned}:latest"
