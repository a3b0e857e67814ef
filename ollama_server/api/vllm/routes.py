"""vLLM HTTP wiring: tokenizer endpoints and the version probe, with vLLM's error object."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server import __version__
from ollama_server.api.companion import about
from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import VLLM
from ollama_server.api.errors.handlers import install
from ollama_server.api.openai.schemas import DetokenizeRequest
from ollama_server.api.openai.schemas import TokenizeRequest
from ollama_server.api.openai.tools import parse_tools
from ollama_server.api.openai.translate import message_text
from ollama_server.api.tgi import tokenize as tgi_tokenize
from ollama_server.api.validation import parse_body
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.services import services

bp = Blueprint("vllm", __name__)
install(bp, VLLM)


@bp.get("/version")
def version():
    """The server version, as vLLM reports its own, with the companion's interpreter, CUDA and library
    versions (seed §5.3.2)."""
    return jsonify({"version": __version__, **about.version_facts(services())})


@bp.post("/tokenize")
def tokenize():
    """Token ids for a prompt, or for chat messages: exactly the prompt a generation would be given.
    TGI's /tokenize shares the path: its body has `inputs`, and it gets TGI's answer."""
    raw = request.get_data()
    if tgi_tokenize.is_tgi_body(raw):
        return tgi_tokenize.respond(raw)
    body = parse_body(TokenizeRequest, raw)
    if (body.prompt is None) == (body.messages is None):
        raise ApiError("invalid_request", "give exactly one of prompt or messages", param="prompt")
    # add_generation_prompt is accepted but, as before, always on: the engine's chat template always adds it.
    messages = None if body.messages is None else tuple(Message(m.role, message_text(m)) for m in body.messages)
    if body.tools and messages is None:
        raise ApiError("invalid_request", "tools need messages (a prompt is tokenized as it is)", param="tools")
    engine_request = GenerateRequest(model=body.model, prompt=body.prompt, messages=messages,
                                     tools=parse_tools(body.tools), add_special=body.add_special_tokens,
                                     dialect="vllm", endpoint=request.path)
    engine = services().engine
    name, tokens = engine.prompt_tokens(engine_request)
    return jsonify({"count": len(tokens), "max_model_len": engine.runtime_context(engine.resolve(name)),
                    "tokens": tokens})


@bp.post("/detokenize")
def detokenize():
    """Text for token ids."""
    body = parse_body(DetokenizeRequest, request.get_data())
    return jsonify({"prompt": services().engine.detokenize(body.model, body.tokens)})
