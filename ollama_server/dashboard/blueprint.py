"""The dashboard blueprint: every page, fragment and action under /dashboard, behind its own session login;
its errors (and the app's errors under /dashboard/) are HTML pages, not JSON."""
from __future__ import annotations

from flask import Blueprint
from flask import render_template

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import APP_WIDE
from ollama_server.api.errors.dialects import html_dialect
from ollama_server.api.errors.handlers import install

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


def error_page(error: ApiError, status: int) -> str:
    """The error page: status, message, and the way back."""
    return render_template("pages/error.html", status=status, message=error.message)


HTML = html_dialect(error_page, "dashboard")
install(bp, HTML)
if not any(prefix == "/dashboard/" for prefix, _ in APP_WIDE):
    APP_WIDE.append(("/dashboard/", HTML))
