"""Ollama HTTP wiring: parse, submit to the engine, answer as JSON or NDJSON."""
from __future__ import annotations

import uuid
from typing import Iterator
from typing import Optional

from flask import Blueprint
from flask import Response
from flask import g
from flask import request

from ollama_server.api import client_gone
from ollama_server.api.errors import ApiError
from ollama_server.api.errors import from_engine_error
from ollama_server.api.errors.dialects import OLLAMA
from ollama_server.api.errors.handlers import install
from ollama_server.api.ollama import model_details as md
from ollama_server.api.ollama import tools as tool_api
from ollama_server.api.ollama import translate as tr
from ollama_server.api.ollama.schemas import ChatBody
from ollama_server.api.ollama.schemas import GenerateBody
from ollama_server.api.ollama.schemas import ShowBody
from ollama_server.api.streaming import dumps
from ollama_server.api.streaming import ndjson_line
from ollama_server.api.validation import parse_body
from ollama_server.engine import planner
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Usage
from ollama_server.engine.types import collect
from ollama_server.models.catalogue import ModelSpec
from ollama_server.services import services

bp = Blueprint("ollama", __name__)
install(bp, OLLAMA)
VERSION = "0.12.0"  # clients (Copilot, Continue) refuse servers older than 0.6.4


def _json(payload: dict, status: int = 200) -> Response:
    """JSON in Ollama's field order (jsonify would sort the keys)."""
    return Response(dumps(payload), status=status, content_type="application/json; charset=utf-8")


# --- discovery ---------------------------------------------------------------------------------
@bp.get("/")
def root():
    """Ollama's liveness probe (HEAD too)."""
    return Response("Ollama is running", mimetype="text/plain")


@bp.get("/api/version")
def version():
    """The Ollama version we answer as."""
    return _json({"version": VERSION})


def _entry(spec: ModelSpec) -> dict:
    entry = {"name": spec.name, "model": spec.name, "modified_at": md.rfc3339(spec.modified_at),
             "size": spec.size_bytes, "digest": md.digest(spec), "details": md.details(spec)}
    error = md.info(spec).error
    if error:  # listed anyway, with the reason it will not load
        entry["error"] = error
    return entry


@bp.get("/api/tags")
@bp.get("/api/models")
def tags():
    """Every model in the catalogue, re-read from disk (/api/models is the seed's alias)."""
    catalogue = services().catalogue
    catalogue.refresh()
    return _json({"models": [_entry(spec) for spec in catalogue.all()]})


@bp.post("/api/show")
def show():
    """Modelfile, template, details and the GGUF key/value map of one model."""
    body = parse_body(ShowBody, request.get_data())
    name = body.model or body.name
    if not name:
        raise ApiError("invalid_request", "model is required", param="model")
    spec = md.find(name)
    info = md.model_info(spec, body.verbose)
    facts = services().engine.loaded_facts(spec.name)
    if facts is not None:
        arch = info.get("general.architecture") or facts.architecture
        info.setdefault(f"{arch}.context_length", facts.trained_context)
        info["ollama_server.runtime_context_length"] = facts.context_length
    out = {"modelfile": md.modelfile(spec), "parameters": md.parameters_text(spec.parameters),
           "template": md.chat_template(spec)}
    if spec.system:
        out["system"] = spec.system
    out.update({"details": md.details(spec), "model_info": info, "capabilities": md.capabilities(spec),
                "modified_at": md.rfc3339(spec.modified_at)})
    return _json(out)


@bp.get("/api/ps")
def ps():
    """Loaded models, when each expires, and the context they run with."""
    svc = services()
    models = []
    for loaded in svc.engine.snapshot().models:
        spec = svc.catalogue.get(loaded.name)
        if spec is None:  # removed from disk while loaded
            continue
        entry = {key: value for key, value in _entry(spec).items() if key not in ("modified_at", "error")}
        models.append({**entry, "expires_at": md.expires_rfc3339(loaded.expires_at),
                       "size_vram": size_vram(svc, spec, loaded.context_length),
                       "context_length": loaded.context_length})
    return _json({"models": models})


def size_vram(svc, spec: ModelSpec, context_length: int) -> int:
    """Bytes of a loaded model on GPUs: 0 on a llama.cpp build without GPU offload (or with nothing offloaded);
    else the offloaded slots as llama.cpp's loader picks them (the last `gpu_layers`, output layer first)
    from the GGUF's per-layer bytes, plus each offloaded block's KV cache. 0 when the sizes are unknown."""
    facts = svc.engine.loaded_facts(spec.name)
    if facts is None or not facts.gpu_offload_supported or facts.gpu_layers == 0:
        return 0
    info = svc.store.info(spec)
    if not info.layer_bytes:
        return 0
    kv = planner.kv_bytes_per_layer(info, context_length, svc.settings.parallel_slots)
    costs = [int(b) + kv for b in info.layer_bytes] + [planner.output_layer_bytes(info)]
    offloaded = len(costs) if facts.gpu_layers < 0 else min(facts.gpu_layers, len(costs))
    return sum(costs[len(costs) - offloaded:])


# --- generation --------------------------------------------------------------------------------
@bp.post("/api/generate")
def generate():
    """Completion of a prompt (templated unless raw); an empty prompt only loads or unloads."""
    body = parse_body(GenerateBody, request.get_data())
    return _serve("generate", body, tr.check_generate, bool(body.prompt), tr.from_generate)


@bp.post("/api/chat")
def chat():
    """The assistant's next message; no messages only loads or unloads."""
    body = parse_body(ChatBody, request.get_data())
    return _serve("chat", body, tr.check_chat, bool(body.messages), tr.from_chat)


def _serve(kind: str, body, check, has_input: bool, translate) -> Response:
    """What generate and chat share: resolve, validate, load-only requests, keep_alive, thinking."""
    svc = services()
    spec = svc.engine.resolve(body.model or None)
    name = body.model or spec.name
    check(body, name)
    keep_alive = tr.keep_alive_seconds(body.keep_alive, svc.settings.default_keep_alive)
    if not has_input:
        return _load_only(kind, svc.engine, spec, name, keep_alive)
    think = tr.think_mode(body.think, svc.settings.preserve_think_tags)
    engine_request = translate(body, think, request.path, spec.system, spec.parameters)
    return _run(kind, engine_request, name, keep_alive, think.show, body.stream is not False)


def _load_only(kind: str, engine, spec: ModelSpec, name: str, keep_alive: Optional[float]) -> Response:
    if keep_alive == 0:
        engine.unload(spec.name)
        return _json(tr.final(kind, name, "unload", None))
    engine.load(spec.name)
    engine.set_keep_alive(spec.name, keep_alive)
    return _json(tr.final(kind, name, "load", None))


def _run(kind: str, engine_request: GenerateRequest, name: str, keep_alive: Optional[float], show_thinking: bool,
         stream: bool) -> Response:
    engine = services().engine
    request_id = client_gone.request_id(str(uuid.uuid4()))
    g.ollama_request_id = request_id
    generation = client_gone.submit(engine_request, request_id)
    if stream:
        response = Response(_guarded(_lines(kind, generation, name, show_thinking), generation, engine, keep_alive),
                            mimetype="application/x-ndjson")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
    else:
        try:
            result = collect(generation.model, generation)
        finally:
            engine.set_keep_alive(generation.model, keep_alive)
        response = _json(tr.final(kind, name, tr.done_reason(result.finish_reason), result.usage, result.text,
                                  result.reasoning if show_thinking else "", result.logprobs,
                                  tool_api.calls_json(result.tool_calls)))
    response.headers["X-Request-Id"] = request_id
    return response


def _guarded(lines: Iterator[str], generation: Generation, engine, keep_alive: Optional[float]):
    try:
        yield from lines
    finally:  # finished or the client went away: free the slot, then start the keep-alive clock
        generation.cancel()
        engine.set_keep_alive(generation.model, keep_alive)


def _lines(kind: str, generation: Generation, name: str, show_thinking: bool) -> Iterator[str]:
    """NDJSON lines: one per chunk with visible text, then the done:true line with the metrics."""
    pending = []  # logprobs of tokens whose text is still held back
    calls = 0  # tool calls sent so far (Ollama sends each whole, in its own line)
    try:
        for chunk in generation:
            pending.extend(chunk.logprobs)
            thinking = chunk.reasoning if show_thinking else ""
            if chunk.text or thinking:
                yield ndjson_line(tr.piece(kind, name, chunk.text, thinking, pending))
                pending = []
            if chunk.tool_calls:
                yield ndjson_line(tr.piece(kind, name, "", tool_calls=tool_api.calls_json(chunk.tool_calls, calls)))
                calls += len(chunk.tool_calls)
            if chunk.finish_reason is not None:
                yield ndjson_line(tr.final(kind, name, tr.done_reason(chunk.finish_reason), chunk.usage,
                                           logprobs=pending))
                return
    except EngineError as exc:
        yield ndjson_line(tr.error_body(from_engine_error(exc).message))
        return
    # Cancelled before it started: no final chunk came, but an Ollama stream always ends with done.
    yield ndjson_line(tr.final(kind, name, tr.done_reason("cancelled"), Usage(), logprobs=pending))
