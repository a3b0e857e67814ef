"""Ollama `POST /api/embed` (list input, truncate, dimensions) and the legacy `POST /api/embeddings`."""
from __future__ import annotations

import logging
from typing import Annotated
from typing import Any
from typing import Optional
from typing import Union

from flask import Blueprint
from flask import Response
from flask import g
from flask import request
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import OLLAMA
from ollama_server.api.errors.handlers import install
from ollama_server.api.ollama import translate as tr
from ollama_server.api.ollama.schemas import Options
from ollama_server.api.ollama.schemas import _keep_alive
from ollama_server.api.streaming import dumps
from ollama_server.api.validation import parse_body
from ollama_server.services import services

bp = Blueprint("ollama_embed", __name__)
install(bp, OLLAMA)
log = logging.getLogger(__name__)
KeepAlive = Annotated[Optional[Any], BeforeValidator(_keep_alive)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")  # Ollama ignores unknown keys
    model: str = ""
    keep_alive: KeepAlive = None
    options: Optional[Options] = None


class EmbedBody(_Body):
    input: Union[str, list[str], None] = None
    truncate: bool = True
    dimensions: Optional[int] = None


class EmbeddingsBody(_Body):
    prompt: str = ""


def _json(payload: dict) -> Response:
    return Response(dumps(payload), content_type="application/json; charset=utf-8")


def _run(body: _Body, inputs: list[str], truncate: bool, dimensions: Optional[int]):
    """Resolve, embed, restart the keep-alive clock; (result or None for a load-only request, model name)."""
    svc = services()
    spec = svc.engine.resolve(body.model or None)
    keep_alive = tr.keep_alive_seconds(body.keep_alive, svc.settings.default_keep_alive)
    tr.log_ignored_options(body.options)  # sampling options mean nothing to an embedding, as in Ollama
    num_ctx = body.options.num_ctx if body.options is not None else None
    if num_ctx is not None and num_ctx < 1:
        raise ApiError("invalid_request", "options.num_ctx must be at least 1", param="options.num_ctx")
    if not inputs:  # Ollama: no input only loads the model
        svc.engine.load(spec.name)
        svc.engine.set_keep_alive(spec.name, keep_alive)
        return None, body.model or spec.name
    g.reached_engine = True  # the engine records this request, refused or not (see api/refusals.py)
    result = svc.engine.embed(spec.name, inputs, truncate=truncate, dimensions=dimensions, num_ctx=num_ctx,
                              dialect="ollama", endpoint=request.path)
    svc.engine.set_keep_alive(result.model, keep_alive)
    return result, body.model or spec.name


@bp.post("/api/embed")
def embed() -> Response:
    """Unit-norm embeddings of a string or a list of strings."""
    body = parse_body(EmbedBody, request.get_data())
    inputs = [body.input] if isinstance(body.input, str) and body.input else []
    if isinstance(body.input, list):
        inputs = body.input
    if body.dimensions is not None and body.dimensions < 1:
        # Ollama ignores 0 and negatives; a 400 says so instead of silently returning full vectors
        raise ApiError("invalid_request", "dimensions must be at least 1", param="dimensions")
    result, name = _run(body, inputs, body.truncate, body.dimensions)
    if result is None:
        return _json({"model": name, "embeddings": []})
    response = _json({"model": name, "embeddings": result.embeddings,
                      "total_duration": tr.nanoseconds(result.total_s), "load_duration": tr.nanoseconds(result.load_s),
                      "prompt_eval_count": result.prompt_tokens})
    response.headers["X-Embedding-Decodes"] = str(result.decodes)
    return response


@bp.post("/api/embeddings")
def embeddings() -> Response:
    """Legacy: one prompt -> one embedding (normalized here too; see docs/api.md)."""
    body = parse_body(EmbeddingsBody, request.get_data())
    # No truncation here: Ollama's legacy route refuses an over-long prompt rather than cutting it.
    result, _ = _run(body, [body.prompt] if body.prompt else [], False, None)
    return _json({"embedding": result.embeddings[0] if result else []})
