"""Optional API key: `Authorization: Bearer <key>` or `X-API-Key: <key>` on every route but the open reads
(vLLM's rules), compared in constant time. Anthropic's routes (/v1/messages...) refuse in Anthropic's error
shape."""
from __future__ import annotations

import hashlib
import hmac

from flask import Flask
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import ANTHROPIC
from ollama_server.services import services

# Liveness and discovery stay open so that probes and load balancers work without the key.
# Only reads: POST / is TGI's inference route and needs the key like any other.
# The Prometheus scrape is one of them unless `metrics_require_key` is set (then it needs the key too).
METRICS_PATH = "/metrics"
PUBLIC_READS = frozenset({"/", "/health", "/api/version", "/version", "/ping", METRICS_PATH})
# The dashboard logs in with the key through its own form and a session cookie (dashboard/session_auth.py);
# its static files hold no data.
OWN_LOGIN_PREFIXES = ("/dashboard", "/static/")
ANTHROPIC_PREFIX = "/v1/messages"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def key_matches(header: str, key: str) -> bool:
    """True when the Authorization header carries the key; constant-time on digests."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(_digest(token.strip()), _digest(key))


def api_key_matches(header: str, key: str) -> bool:
    """True when an `x-api-key` header is the key; constant-time on digests."""
    return bool(header.strip()) and hmac.compare_digest(_digest(header.strip()), _digest(key))


def is_open(method: str, path: str, metrics_require_key: bool) -> bool:
    """True for what needs no key even when one is set: the open reads (the scrape unless metrics_require_key)
    and the dashboard's own login."""
    if path.startswith(OWN_LOGIN_PREFIXES):
        return True
    if method not in ("GET", "HEAD") or path not in PUBLIC_READS:
        return False
    return not (path == METRICS_PATH and metrics_require_key)


def init_app(app: Flask) -> None:
    @app.before_request
    def require_key():
        key = services().settings.api_key
        if not key or request.method == "OPTIONS":
            return None
        if is_open(request.method, request.path, services().settings.metrics_require_key):
            return None
        if key_matches(request.headers.get("Authorization", ""), key) or \
                api_key_matches(request.headers.get("x-api-key", ""), key):
            return None
        if request.path.startswith(ANTHROPIC_PREFIX):
            return ANTHROPIC.render(ApiError("unauthorized", "invalid x-api-key"))
        return jsonify({"error": "Unauthorized"}), 401
