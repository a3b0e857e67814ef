"""Pure framing: server-sent events and newline-delimited JSON."""
from __future__ import annotations

import json
from typing import Any


def dumps(payload: Any) -> str:
    """Compact JSON, UTF-8 kept as is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def sse_event(payload: Any, space: bool = True) -> str:
    """One SSE `data:` event; TGI writes no space after the colon."""
    body = payload if isinstance(payload, str) else dumps(payload)
    return f"data: {body}\n\n" if space else f"data:{body}\n\n"


def ndjson_line(payload: Any) -> str:
    """One NDJSON line."""
    return dumps(payload) + "\n"
