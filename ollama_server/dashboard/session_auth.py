"""Dashboard login: with an API key set, a form exchanges the key for a signed session cookie; every
state-changing request carries the session's CSRF token (a form field or htmx's X-CSRF-Token header)."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from flask import Flask
from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from ollama_server.dashboard.blueprint import bp
from ollama_server.services import services

SECRET_FILE = "dashboard_secret"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_ENDPOINTS = frozenset({"dashboard.login", "dashboard.asset"})  # reachable without a session


def load_secret(data_dir: str) -> bytes:
    """The cookie-signing secret, created once per data directory (0600) so sessions survive restarts."""
    path = Path(data_dir) / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secret)
        return secret


def key_fingerprint(key: str) -> str:
    """What the session stores instead of the key: changing the key logs every session out."""
    return hashlib.sha256(("dashboard-session:" + key).encode("utf-8")).hexdigest()


def logged_in() -> bool:
    """True when no key is set, or the session was opened with the current key."""
    key = services().settings.api_key
    if not key:
        return True
    return hmac.compare_digest(session.get("auth", ""), key_fingerprint(key))


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok() -> bool:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(sent, expected)


@bp.before_request
def guard():
    """Login first (when a key is set), then CSRF on anything that changes state."""
    if request.endpoint in OPEN_ENDPOINTS or request.method == "OPTIONS":  # OPTIONS answers no data
        return None
    if not logged_in():
        if request.headers.get("HX-Request"):  # a poll from a page whose session ended: send the page to login
            return "", 401, {"HX-Redirect": url_for("dashboard.login", next=request.full_path)}
        if request.method == "GET":
            return redirect(url_for("dashboard.login", next=request.full_path))
        abort(401)
    if request.method not in ("GET", "HEAD") and not csrf_ok():
        abort(403, description="missing or wrong CSRF token: reload the page")
    return None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a right key opens the session and goes back to where the user was."""
    key = services().settings.api_key
    target = _safe_next(request.values.get("next", ""))
    if not key:
        return redirect(target)
    error = ""
    if request.method == "POST":
        if not csrf_ok():
            error = "The form expired: try again."
        elif hmac.compare_digest(key_fingerprint(request.form.get("api_key", "")), key_fingerprint(key)):
            session.clear()
            session["auth"] = key_fingerprint(key)
            session.permanent = True
            return redirect(target)
        else:
            error = "Wrong API key."
    return render_template("pages/login.html", error=error, next=target), 401 if error else 200


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("dashboard.login"))


def _safe_next(target: str) -> str:
    """Only a dashboard path: `next` must never send the browser to another site."""
    if target.startswith("/dashboard") and not target.startswith("//"):
        return target.rstrip("?") or url_for("dashboard.overview")
    return url_for("dashboard.overview")


def init_app(app: Flask) -> None:
    app.secret_key = load_secret(services_of(app).settings.data_dir)
    # Flask's defaults already hold these keys (SameSite None), so setdefault would never take effect.
    app.config["SESSION_COOKIE_SAMESITE"] = app.config.get("SESSION_COOKIE_SAMESITE") or "Strict"
    app.config["SESSION_COOKIE_HTTPONLY"] = True


def services_of(app: Flask):
    from ollama_server.services import EXTENSION_KEY
    return app.extensions[EXTENSION_KEY]
