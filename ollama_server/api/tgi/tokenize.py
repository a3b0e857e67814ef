"""TGI's POST /tokenize ({"inputs"} -> [{id, text, start, stop}]), which shares its path with vLLM's."""
from __future__ import annotations

import json

from flask import Response
from flask import jsonify

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import TGI
from ollama_server.api.tgi import translate as tr
from ollama_server.api.tgi.schemas import GenerateBody
from ollama_server.api.validation import parse_body
from ollama_server.engine.types import EngineError
from ollama_server.services import services


def is_tgi_body(raw: bytes) -> bool:
    """True for TGI's body (`inputs`), False for vLLM's (`prompt` / `messages`) or anything unreadable."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # deep nesting: vLLM's parser answers it with its own 400
        return False
    return isinstance(body, dict) and "inputs" in body and "prompt" not in body and "messages" not in body


def token_spans(inputs: str, tokens: list[tuple[int, str]]) -> list[dict]:
    """TGI's entry per (id, text) token: start/stop are byte offsets into `inputs`, as TGI reports them;
    a token that is not in the text there (BOS, say) gets an empty span at the current offset."""
    data = inputs.encode("utf-8")
    offset = 0
    spans = []
    for token_id, text in tokens:
        piece = text.encode("utf-8")
        start = offset
        if piece and data.startswith(piece, offset):
            offset += len(piece)
        elif piece.startswith(b" ") and data.startswith(piece[1:], offset) and len(piece) > 1:
            offset += len(piece) - 1  # a SentencePiece word-start space the text did not have
        spans.append({"id": token_id, "text": text, "start": start, "stop": offset})
    return spans


def respond(raw: bytes) -> Response:
    """The TGI answer for a /tokenize body, errors in TGI's shape (422 for a bad body)."""
    try:
        body = parse_body(GenerateBody, raw)
        if not body.inputs:
            raise ApiError("invalid_request", "`inputs` cannot be empty", param="inputs")
        engine = services().engine
        model, ids = engine.tokenize(tr.model_of(body), body.inputs, add_special=True)
        tokens = [(token_id, engine.detokenize(model, [token_id])) for token_id in ids]
    except ApiError as exc:
        return TGI.render(exc)
    except EngineError as exc:
        return TGI.render(TGI.from_engine(exc))
    return jsonify(token_spans(body.inputs, tokens))
