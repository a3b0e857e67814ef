"""Third-party JavaScript, served by the app from the packages that ship it (no CDN, nothing pasted into
the repo): htmx and its websocket extension from node_modules (npm ci, package-lock.json), plotly.min.js
from the Python `plotly` package."""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Optional

from flask import Response
from flask import abort
from flask import request
from flask import send_file

from ollama_server import paths
from ollama_server.dashboard.blueprint import bp

NODE_MODULES = paths.ROOT / "node_modules"
ONE_YEAR_S = 365 * 86400  # URLs carry the package version, so a new version is a new URL


def _plotly() -> tuple[Path, str]:
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js", plotly.__version__


def _npm(package: str, relative: str) -> tuple[Path, str]:
    root = NODE_MODULES / package
    try:
        version = json.loads((root / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        version = "missing"
    return root / relative, version


LOCATORS = {
    "htmx.min.js": lambda: _npm("htmx.org", "dist/htmx.min.js"),
    "htmx-ext-ws.js": lambda: _npm("htmx-ext-ws", "dist/ws.min.js"),
    "plotly.min.js": _plotly,
}


@lru_cache(maxsize=None)
def locate(name: str) -> Optional[tuple[Path, str]]:
    """(file, version) of a vendored asset, or None when it is not one."""
    locator = LOCATORS.get(name)
    return locator() if locator else None


def asset_url(name: str) -> str:
    """The versioned URL of a vendored asset, for templates."""
    found = locate(name)
    return f"/dashboard/assets/{name}?v={found[1] if found else 'missing'}"


def missing_assets() -> list[str]:
    """Vendored files that are not installed (the page says how to install them)."""
    return [name for name in LOCATORS if not locate(name)[0].is_file()]


@lru_cache(maxsize=None)
def compressed(path: Path) -> bytes:
    """The file gzipped once per process: plotly.min.js is 4.8 MB as shipped, about 1.4 MB on the wire."""
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


@bp.get("/assets/<name>")
def asset(name: str):
    """One vendored file (gzipped when the browser accepts it); 404 for anything else or when it is not
    installed (`make install`)."""
    found = locate(name)
    if found is None or not found[0].is_file():
        abort(404)
    if "gzip" not in request.accept_encodings:
        return send_file(found[0], mimetype="text/javascript", max_age=ONE_YEAR_S, conditional=True)
    response = Response(compressed(found[0]), mimetype="text/javascript")
    response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.cache_control.public = True
    response.cache_control.max_age = ONE_YEAR_S
    response.set_etag(f"{name}-{found[1]}-gz")
    return response.make_conditional(request)
