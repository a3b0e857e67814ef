"""Ollama model management: DELETE /api/delete, POST /api/copy."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ollama_manage", __name__)
