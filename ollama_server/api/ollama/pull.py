"""Ollama model management: POST /api/pull (streamed progress)."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ollama_pull", __name__)
