"""Ollama-style model names: `name[:tag]`, tag `latest` by default, never a path."""
from __future__ import annotations

import re

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*){0,2}$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


class InvalidModelName(ValueError):
    """A model name that is not of the form name[:tag]."""


def normalize(name: str) -> str:
    """Lower-case `name[:tag]` with the tag filled in; rejects anything path-like."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidModelName("model name must be a non-empty string")
    text = name.strip().lower()
    base, _, tag = text.rpartition(":") if ":" in text else (text, "", "latest")
    tag = tag or "latest"
    if ".." in base or not _NAME.match(base) or not _TAG.match(tag):
        raise InvalidModelName(f"invalid model name {name!r}")
    return f"{base}:{tag}"


def from_filename(stem: str) -> str:
    """A model name for a .gguf file found in a directory."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model"
    return f"{cleaned}:latest"
