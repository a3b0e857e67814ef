"""What every dashboard page shows around its content: navigation, health badge, active alerts, refresh."""
from __future__ import annotations

from typing import Any

from flask import Flask

from ollama_server.dashboard.assets import asset_url
from ollama_server.dashboard.assets import missing_assets
from ollama_server.dashboard.fragments import ago
from ollama_server.dashboard.fragments import gib
from ollama_server.dashboard.fragments import iso
from ollama_server.dashboard.session_auth import csrf_token
from ollama_server.dashboard.session_auth import logged_in
from ollama_server.services import services

NAV = (("dashboard.overview", "Overview"), ("dashboard.gpu", "GPUs"), ("dashboard.models", "Models"),
       ("dashboard.apis", "APIs"), ("dashboard.config", "Configuration"), ("dashboard.optimization", "Optimization"),
       ("dashboard.jobs", "Jobs"))


def status_badge() -> dict[str, Any]:
    """Health score, status and firing alerts from the last collection (None before the first one)."""
    monitor = services().monitor
    collection = monitor.latest if monitor is not None else None
    if collection is None:
        return {"score": None, "status": "starting", "alerts": 0}
    firing = sum(1 for _, state in collection.alerts if state.phase == "firing")
    return {"score": round(collection.health.score), "status": collection.health.status, "alerts": firing}


def init_app(app: Flask) -> None:
    @app.context_processor
    def dashboard_context() -> dict[str, Any]:
        from flask import request
        if not request.path.startswith("/dashboard"):
            return {}
        settings = services().settings
        return {"nav": NAV, "badge": status_badge() if logged_in() else None,
                "refresh_seconds": settings.dashboard_refresh_seconds, "csrf_token": csrf_token,
                "asset_url": asset_url, "missing_assets": missing_assets(), "key_required": bool(settings.api_key)}

    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["gib"] = gib
    app.jinja_env.filters["iso"] = iso
