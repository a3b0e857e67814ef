"""vLLM HTTP wiring: tokenizer endpoints and the version probe, with vLLM's error object."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request
from werkzeug.exceptions import HTTPException

from ollama_server import __version__
from ollama_server.api.errors import ApiError
from ollama_server.api.errors import DEFAULT_STATUS
from ollama_server.api.errors import from_engine_error
from ollama_server.api.openai.schemas import DetokenizeRequest
from ollama_server.api.openai.schemas import TokenizeRequest
from ollama_server.api.openai.translate import message_text
from ollama_server.api.validation import parse_body
from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import Message
from ollama_server.services import services

bp = Blueprint("vllm", __name__)
_TYPES = {400: "BadRequestError", 404: "NotFoundError", 413: "BadRequestError", 429: "TooManyRequestsError",
          503: "ServiceUnavailableError"}


@bp.errorhandler(ApiError)
def api_error(error: ApiError):
    """vLLM's error object: the OpenAI shape with the HTTP status as `code`."""
    status = error.status or DEFAULT_STATUS.get(error.kind, 500)
    body = {"error": {"message": error.message, "type": _TYPES.get(status, "InternalServerError"),
                      "param": error.param, "code": status}}
    return jsonify(body), status


@bp.errorhandler(EngineError)
def engine_error(error: EngineError):
    return api_error(from_engine_error(error))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return api_error(ApiError("invalid_request", exc.description or exc.name, status=exc.code))


@bp.get("/version")
def version():
    """The server version, as vLLM reports its own."""
    return jsonify({"version": __version__})


@bp.post("/tokenize")
def tokenize():
    """Token ids for a prompt, or for chat messages rendered with the model's template."""
    body = parse_body(TokenizeRequest, request.get_data())
    if (body.prompt is None) == (body.messages is None):
        raise ApiError("invalid_request", "give exactly one of prompt or messages", param="prompt")
    engine = services().engine
    spec = engine.resolve(body.model)
    if body.messages is not None:
        engine.load(spec.name)  # the template and BOS text come from the loaded model
        facts = engine.loaded_facts(spec.name)
        text = render_chat([Message(m.role, message_text(m)) for m in body.messages],
                           template=facts.chat_template, architecture=facts.architecture,
                           bos_token=facts.bos_text, eos_token=facts.eos_text)
        add_special = not (facts.bos_text and text.startswith(facts.bos_text))
    else:
        text, add_special = body.prompt, body.add_special_tokens
    _, tokens = engine.tokenize(spec.name, text, add_special=add_special)
    return jsonify({"count": len(tokens), "max_model_len": engine.runtime_context(spec), "tokens": tokens})


@bp.post("/detokenize")
def detokenize():
    """Text for token ids."""
    body = parse_body(DetokenizeRequest, request.get_data())
    return jsonify({"prompt": services().engine.detokenize(body.model, body.tokens)})
