"""vLLM HTTP wiring: tokenizer endpoints and the version probe, with vLLM's error object."""
from __future__ import annotations

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server import __version__
from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import VLLM
from ollama_server.api.errors.handlers import install
from ollama_server.api.openai.schemas import DetokenizeRequest
from ollama_server.api.openai.schemas import TokenizeRequest
from ollama_server.api.openai.translate import message_text
from ollama_server.api.validation import parse_body
from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.types import Message
from ollama_server.services import services

bp = Blueprint("vllm", __name__)
install(bp, VLLM)


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
