"""Polled fragments: a partial is rendered only when its data changed since the version the page holds
(the `v` the fragment carries back); otherwise 204, which htmx swaps as nothing."""
from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Callable
from typing import Optional

from flask import make_response
from flask import render_template
from flask import request


def version_of(data: Any) -> str:
    """A short digest of a fragment's data: equal data, equal version."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2s(text.encode("utf-8"), digest_size=8).hexdigest()


def render_fragment(name: str, data: dict[str, Any], expand: Optional[Callable[[dict], dict]] = None):
    """`partials/<name>.html` with `data` and its version; 204 when the caller already has this version.
    `expand(data)` adds what is costly to build from the data (chart figures): skipped on a 204."""
    version = version_of(data)
    if request.args.get("v") == version:
        return "", 204
    context = expand(data) if expand is not None else data
    response = make_response(render_template(f"partials/{name}.html", part={**context, "version": version}))
    response.headers["Vary"] = "HX-Request"
    response.headers["Cache-Control"] = "no-store"
    return response


def with_version(data: dict[str, Any], expand: Optional[Callable[[dict], dict]] = None) -> dict[str, Any]:
    """The data (expanded) plus its version, for a page that includes the fragment on first render."""
    return {**(expand(data) if expand is not None else data), "version": version_of(data)}


def iso(ts: Optional[float]) -> Optional[str]:
    """Epoch seconds -> ISO 8601 UTC (seconds), or None."""
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(ts: Optional[float], now: Optional[float] = None) -> str:
    """'12 s ago', '3 min ago', '2 h ago' — for humans; exact times are in the title attribute."""
    if ts is None:
        return "—"
    seconds = max(0.0, (now or time.time()) - ts)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def gib(value: Optional[float]) -> str:
    """Bytes as GiB text with one decimal, or '—'."""
    return "—" if value is None else f"{value / 1024 ** 3:.1f} GiB"
