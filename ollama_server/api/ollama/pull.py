"""Ollama model management: POST /api/pull (streamed progress)."""
from __future__ import annotations

import logging
from typing import Iterator
from typing import Optional

from flask import Blueprint
from flask import Response
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import OLLAMA
from ollama_server.api.errors.handlers import install
from ollama_server.api.streaming import dumps
from ollama_server.api.streaming import ndjson_line
from ollama_server.api.validation import parse_body
from ollama_server.models.pull_source import PullError
from ollama_server.models.pull_source import plan as plan_pull
from ollama_server.services import services

bp = Blueprint("ollama_pull", __name__)
install(bp, OLLAMA)
log = logging.getLogger(__name__)
_KINDS = {400: "invalid_request", 404: "not_found", 409: "invalid_request"}


class PullBody(BaseModel):
    """POST /api/pull: `model` (or legacy `name`), `source`, `digest`, `insecure`, `stream`."""

    model_config = ConfigDict(extra="allow")

    model: Optional[str] = None
    name: Optional[str] = None
    source: Optional[str] = None
    digest: Optional[str] = None
    insecure: Optional[bool] = None
    stream: Optional[bool] = None


def _api_error(exc: PullError) -> ApiError:
    return ApiError(_KINDS.get(exc.status, "internal"), exc.message, status=exc.status)


def _failure(exc: Exception) -> PullError:
    """Any failure as a PullError; unexpected ones (disk full, bugs) are logged with their traceback."""
    if isinstance(exc, PullError):
        return exc
    log.exception("pull failed")
    return PullError(500, f"pull failed: {exc}")


@bp.post("/api/pull")
def pull_model():
    """Download a GGUF from an http(s) URL or hf:// reference into the model store, with progress."""
    body = parse_body(PullBody, request.get_data())
    try:
        plan = plan_pull(body.model or body.name, body.source, body.digest)
    except PullError as exc:
        raise _api_error(exc) from None
    svc = services()
    events = svc.store.pull(plan, allow_private=svc.settings.allow_private_pull_urls, insecure=bool(body.insecure),
                            partial_max_age=svc.settings.partial_download_max_age)
    try:
        first = next(events)  # connects and checks the source: failures so far get a real status
    except Exception as exc:
        raise _api_error(_failure(exc)) from None
    if body.stream is False:
        try:
            for _ in events:
                pass
        except Exception as exc:
            raise _api_error(_failure(exc)) from None
        return Response(dumps({"status": "success"}), content_type="application/json; charset=utf-8")
    response = Response(_lines(first, events), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _lines(first: dict, events: Iterator[dict]) -> Iterator[str]:
    """NDJSON progress; a failure after the first line is a final {"error": ...} line."""
    try:
        yield ndjson_line(first)
        for event in events:
            yield ndjson_line(event)
    except Exception as exc:
        yield ndjson_line({"error": _failure(exc).message})
    finally:
        events.close()
