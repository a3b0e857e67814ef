"""Ollama HTTP wiring."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("ollama", __name__)
