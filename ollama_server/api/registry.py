"""The seed service's model registry routes: /models/register, /models/set_active, /models/active, /models."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("registry", __name__)
