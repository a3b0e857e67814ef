"""TGI HTTP wiring: POST /generate, /generate_stream and / (huggingface_hub's target), GET /info."""
from __future__ import annotations

import uuid
from typing import Iterator
from typing import Optional

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

import ollama_server
from ollama_server.api import client_gone
from ollama_server.api.companion import about
from ollama_server.api.companion import generate as seed_generate
from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import TGI
from ollama_server.api.errors.handlers import install
from ollama_server.api.streaming import sse_event
from ollama_server.api.tgi import translate as tr
from ollama_server.api.tgi.schemas import GenerateBody
from ollama_server.api.validation import parse_body
from ollama_server.engine.generation import Generation
from ollama_server.engine.types import collect
from ollama_server.services import Services
from ollama_server.services import services

bp = Blueprint("tgi", __name__)
install(bp, TGI)


def _body() -> GenerateBody:
    return parse_body(GenerateBody, request.get_data())


def _truncated(svc: Services, body: GenerateBody) -> Optional[tuple[int, ...]]:
    """The last `truncate` prompt tokens, when the prompt is longer than that (TGI truncates on the left)."""
    truncate = tr.parameters_of(body).truncate
    if not truncate:
        return None
    _, ids = svc.engine.tokenize(tr.model_of(body), body.inputs)
    return tuple(ids[-truncate:]) if len(ids) > truncate else None


def _submit(svc: Services, body: GenerateBody, stream: bool) -> tuple[Generation, str]:
    tr.validate(body, stream)  # before any tokenizing for `truncate`
    engine_request = tr.to_engine_request(body, request.path, stream, _truncated(svc, body))
    request_id = client_gone.request_id(f"tgi-{uuid.uuid4().hex[:24]}")
    generation = client_gone.submit(engine_request, request_id)
    return generation, request_id


def compute_type(svc: Services, model: Optional[str]) -> str:
    """"gpu" when the model's layers are offloaded to a GPU, else "cpu" (x-compute-type, /info's device)."""
    facts = svc.engine.loaded_facts(model) if model else None
    if facts is not None:  # what the load applied: a CPU-only build offloads nothing, whatever gpu_layers says
        return "gpu" if facts.gpu_offload_supported and facts.gpu_layers != 0 else "cpu"
    # Not loaded yet: what a load would do, by the GPU reader and the configured layers.
    return "gpu" if svc.gpu.available and svc.settings.gpu_layers != 0 else "cpu"


def _prefix(body: GenerateBody) -> str:
    return body.inputs if tr.parameters_of(body).return_full_text else ""


def _generate(body: GenerateBody) -> tuple[dict, dict]:
    """(response body, headers) of one non-streamed generation."""
    svc = services()
    generation, request_id = _submit(svc, body, stream=False)
    try:
        result = collect(generation.model, generation)
    finally:
        generation.cancel()  # a no-op when finished; frees the slot after a failure
    p = tr.parameters_of(body)
    prefill = _prefill(svc, generation) if p.decoder_input_details else None
    headers = tr.timing_headers(result.usage, body.inputs, compute_type(svc, generation.model))
    headers["X-Request-Id"] = request_id
    return tr.generate_response(result, p, _prefix(body), prefill), headers


def _prefill(svc: Services, generation: Generation) -> list[dict]:
    """Prompt tokens for decoder_input_details; their logprobs are not computed here (null)."""
    return [tr.token_json(t, svc.engine.detokenize(generation.model, [t]), None)
            for t in generation.prompt_tokens]


def _eos_token(svc: Services, model: str) -> tuple[int, str]:
    """The model's end-of-sequence token (id, text), for a stream that generated nothing else."""
    facts = svc.engine.loaded_facts(model)
    spec = svc.catalogue.get(model)
    token_id = 0
    if spec is not None:
        value = svc.store.info(spec).metadata.get("tokenizer.ggml.eos_token_id", 0)
        token_id = value if isinstance(value, int) else 0
    return token_id, facts.eos_text if facts else ""


def _stream(body: GenerateBody) -> Response:
    """SSE `data:{json}` events, one per token, no [DONE]."""
    svc = services()  # the generator below runs outside the app context
    generation, request_id = _submit(svc, body, stream=True)
    p = tr.parameters_of(body)
    plan = tr.StreamPlan(prefix=_prefix(body), details=bool(p.details), top_n=p.top_n_tokens or 0,
                         parameters=p, eos_token=lambda: _eos_token(svc, generation.model))

    def events() -> Iterator[str]:
        try:
            for payload in tr.stream_payloads(generation, plan):
                yield sse_event(payload, space=False)
        finally:  # finished or the client went away: either way, free the slot
            generation.cancel()

    response = Response(events(), mimetype="text/event-stream")
    response.headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                             "X-Request-Id": request_id, "x-compute-type": compute_type(svc, generation.model)})
    return response


@bp.post("/generate")
def generate():
    """One generation as JSON; the companion seed's body ({"prompt", ...}, no "inputs") is answered in its shape."""
    raw = seed_generate.peek_json(request.get_data())
    if seed_generate.is_seed_body(raw):
        return seed_generate.respond(raw)
    payload, headers = _generate(_body())
    response = jsonify(payload)
    response.headers.update(headers)
    return response


@bp.post("/generate_stream")
def generate_stream():
    """One generation as server-sent events."""
    return _stream(_body())


@bp.post("/")
def compat_generate():
    """huggingface_hub's text_generation(): streams when `stream` is true, else a one-element list."""
    body = _body()
    if body.stream:
        return _stream(body)
    payload, headers = _generate(body)
    response = jsonify([payload])  # TGI wraps it in a list to match the old Inference API
    response.headers.update(headers)
    return response


@bp.get("/info")
def model_info():
    """What TGI's /info reports, for the default model (the active one, else the smallest), plus the
    companion's directories and API version."""
    svc = services()
    spec = svc.engine.default_model()
    if spec is None:
        raise ApiError("unavailable", "no model is available")
    settings = svc.settings
    max_total = svc.engine.runtime_context(spec)
    body = tr.info(spec.name, max_total, settings.parallel_slots + settings.max_queue,
                   ollama_server.__version__, compute_type(svc, spec.name))
    # The companion's /info keys (seed §5.3.2); TGI's own "version" is already ours.
    return jsonify({**about.directories(svc), "api_version": about.API_VERSION, **body})
