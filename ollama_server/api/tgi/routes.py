"""TGI HTTP wiring."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tgi", __name__)
