"""OpenAI `POST /v1/embeddings`: text or token-id input, `dimensions`, float or base64 vectors."""
from __future__ import annotations

import base64
from typing import Annotated
from typing import Literal
from typing import Optional
from typing import Union

import numpy as np
from flask import Blueprint
from flask import Response
from flask import g
from flask import jsonify
from flask import request
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import OPENAI
from ollama_server.api.errors.handlers import install
from ollama_server.api.validation import parse_body
from ollama_server.services import services

bp = Blueprint("openai_embeddings", __name__)
install(bp, OPENAI)
MAX_INPUTS = 2048  # OpenAI's own limit on inputs per request

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
Input = Union[str, Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)], TokenIds,
              Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)]]


class EmbeddingRequest(BaseModel):
    """The body openai-python sends (unknown keys allowed, as the SDK passes extras through)."""

    model_config = ConfigDict(extra="allow")
    input: Input
    model: Optional[str] = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[Annotated[int, Field(ge=1)]] = None
    user: Optional[str] = None  # accepted: nothing here is per-user


def inputs_of(value) -> list:
    """The request's inputs as a list: texts, or token-id lists (one flat list is one input)."""
    if isinstance(value, str):
        return [value]
    if value and isinstance(value[0], int):
        return [value]
    for index, item in enumerate(value):
        if isinstance(item, str) and not item:
            raise ApiError("invalid_request", f"input[{index}] is an empty string", param="input")
    return list(value)


def encode(vector: list[float], encoding_format: str):
    """The vector as floats, or base64 of little-endian float32 (what openai-python decodes)."""
    if encoding_format == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@bp.post("/v1/embeddings")
def embeddings() -> Response:
    """Embeddings of one or several inputs, in input order."""
    body = parse_body(EmbeddingRequest, request.get_data())
    if body.input == "":
        raise ApiError("invalid_request", "input must not be an empty string", param="input")
    g.reached_engine = True  # the engine records this request, refused or not (see api/refusals.py)
    result = services().engine.embed(body.model or None, inputs_of(body.input), truncate=False,
                                     dimensions=body.dimensions, dialect="openai", endpoint=request.path)
    data = [{"object": "embedding", "index": index, "embedding": encode(vector, body.encoding_format)}
            for index, vector in enumerate(result.embeddings)]
    response = jsonify({"object": "list", "data": data, "model": result.model,
                        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}})
    response.headers["X-Embedding-Decodes"] = str(result.decodes)  # batching made visible to tests and users
    return response
