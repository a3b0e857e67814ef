"""The companion seed's POST /generate body ({prompt, max_tokens, temperature, top_p, mode}), answered at once
with the text; TGI's /generate route hands such bodies here (told apart by `inputs` / `prompt`)."""
from __future__ import annotations

import json
import uuid
from typing import Any
from typing import Literal
from typing import Optional

from flask import Response
from flask import jsonify
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.errors.dialects import COMPANION
from ollama_server.api.validation import describe
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import collect
from ollama_server.services import services


class SeedGenerateBody(BaseModel):
    """The seed's GenerateRequest; `mode` think asks the model to think (its reasoning returned apart)."""

    model_config = ConfigDict(extra="forbid")

    model_id: Optional[str] = Field(default=None, max_length=300)
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=256, ge=1, le=1_000_000)
    temperature: float = Field(default=0.7, ge=0.0, le=100.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    mode: Literal["normal", "think"] = "normal"


def peek_json(data: bytes) -> Any:
    """The body parsed as JSON, or None (TGI's own parser then reports what is wrong with it)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # a body nested past the parser's depth too
        return None


def is_seed_body(raw: Any) -> bool:
    """A JSON object with `prompt` and without TGI's `inputs`."""
    return isinstance(raw, dict) and "inputs" not in raw and "prompt" in raw


def respond(raw: dict) -> Response:
    """Generate synchronously and answer with the text (errors in the seed's {"detail"})."""
    try:
        return _generate(raw)
    except ApiError as exc:
        return COMPANION.render(exc)
    except EngineError as exc:
        error = from_engine_error(exc)
        if exc.param and exc.param not in error.message:  # say which field of the seed's body was refused
            error.message = f"{exc.param}: {error.message}"
        return COMPANION.render(error)


def _generate(raw: dict) -> Response:
    try:
        body = SeedGenerateBody.model_validate(raw, strict=True)
    except ValidationError as exc:
        raise describe(exc) from None
    svc = services()
    model = None if body.model_id in (None, "active") else body.model_id
    request_id = f"gen_{uuid.uuid4().hex[:12]}"
    request = GenerateRequest(model=model, messages=(Message("user", body.prompt),), max_tokens=body.max_tokens,
                              sampling=SamplingParams(temperature=body.temperature, top_p=body.top_p),
                              think=body.mode == "think", think_field="mode",
                              split_thinking=True, dialect="companion", endpoint="/generate")
    generation = svc.engine.submit(request, request_id=request_id)
    result = collect(generation.model, generation)
    usage = result.usage
    return jsonify({"job_id": request_id, "status": "done", "model_id": result.model, "text": result.text,
                    "reasoning": result.reasoning or None, "mode": body.mode, "finish_reason": result.finish_reason,
                    "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                              "total_tokens": usage.total_tokens},
                    "duration_s": round(usage.total_s, 3)})
