"""GET /openapi.json: an OpenAPI 3.1 description of every route, made from the url_map and the body models."""
from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from ollama_server import __version__
from ollama_server.api.anthropic.schemas import CountTokensRequest
from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.auth import is_open
from ollama_server.api.companion.generate import SeedGenerateBody
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.dialects import for_path
from ollama_server.api.errors.handlers import install
from ollama_server.api.llama_server.schemas import InfillBody
from ollama_server.api.ollama.embed import EmbedBody
from ollama_server.api.ollama.embed import EmbeddingsBody
from ollama_server.api.ollama.manage import CopyBody
from ollama_server.api.ollama.manage import DeleteBody
from ollama_server.api.ollama.pull import PullBody
from ollama_server.api.ollama.schemas import ChatBody
from ollama_server.api.ollama.schemas import GenerateBody as OllamaGenerateBody
from ollama_server.api.ollama.schemas import ShowBody
from ollama_server.api.openai.embeddings import EmbeddingRequest
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.openai.schemas import DetokenizeRequest
from ollama_server.api.openai.schemas import TokenizeRequest
from ollama_server.api.registry import ActiveBody
from ollama_server.api.registry import RegisterBody
from ollama_server.api.responses.schemas import ResponsesRequest
from ollama_server.api.tgi.schemas import GenerateBody as TgiGenerateBody
from ollama_server.jobs.requests import DataGenJobRequest
from ollama_server.jobs.requests import EvalJobRequest
from ollama_server.services import services

bp = Blueprint("openapi", __name__)
install(bp, PLAIN)
PATH = "/openapi.json"
COMPONENT_PREFIX = "#/components/schemas/"

# endpoint -> the models its JSON body is parsed with. Two models: the route tells two bodies apart
# (TGI's {"inputs"} from vLLM's /tokenize and the companion seed's /generate).
BODIES: dict[str, tuple[type[BaseModel], ...]] = {
    "openai.chat_completions": (ChatCompletionRequest,),
    "openai.completions": (CompletionRequest,),
    "openai_embeddings.embeddings": (EmbeddingRequest,),
    "responses.create_response": (ResponsesRequest,),
    "anthropic.messages": (MessagesRequest,),
    "anthropic.count_tokens": (CountTokensRequest,),
    "vllm.tokenize": (TokenizeRequest, TgiGenerateBody),
    "vllm.detokenize": (DetokenizeRequest,),
    "llama_server.infill": (InfillBody,),
    "ollama.generate": (OllamaGenerateBody,),
    "ollama.chat": (ChatBody,),
    "ollama.show": (ShowBody,),
    "ollama_embed.embed": (EmbedBody,),
    "ollama_embed.embeddings": (EmbeddingsBody,),
    "ollama_pull.pull_model": (PullBody,),
    "ollama_manage.copy": (CopyBody,),
    "ollama_manage.delete": (DeleteBody,),
    "tgi.generate": (TgiGenerateBody, SeedGenerateBody),
    "tgi.generate_stream": (TgiGenerateBody,),
    "tgi.compat_generate": (TgiGenerateBody,),
    "registry.register": (RegisterBody,),
    "registry.set_active": (ActiveBody,),
    "companion_jobs.create_eval_job": (EvalJobRequest,),
    "companion_jobs.create_data_gen_job": (DataGenJobRequest,),
}

_TEXT = {"type": "string", "minLength": 1}
_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": _TEXT, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
                   "code": {"type": ["string", "integer", "null"]}}}}}
_STATUS_CODE_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["code", "message", "type"],
    "properties": {"code": {"type": "integer"}, "message": _TEXT, "type": {"type": "string"}}}}}
# dialect name (errors/dialects.py, and the blueprints' own) -> its error body.
ERROR_SCHEMAS: dict[str, dict] = {
    "openai": _OPENAI_ERROR,
    "vllm": _OPENAI_ERROR,
    "ollama": {"type": "object", "required": ["error"], "properties": {"error": _TEXT}},
    "plain": {"type": "object", "required": ["error"], "properties": {"error": _TEXT}},
    "companion": {"type": "object", "required": ["detail", "error"],
                  "properties": {"detail": _TEXT, "error": _TEXT}},
    "tgi": {"type": "object", "required": ["error", "error_type"],
            "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}},
    "anthropic": {"type": "object", "required": ["type", "error"], "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"],
                  "properties": {"type": {"type": "string"}, "message": _TEXT}}}},
    "llama-server": _STATUS_CODE_ERROR,
    "config": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "fields"],
        "properties": {"message": _TEXT, "type": {"type": "string"}, "fields": {"type": "object"}}}}},
}
_CONVERTER_SCHEMAS = {"IntegerConverter": {"type": "integer"}, "FloatConverter": {"type": "number"}}
_VARIABLE = re.compile(r"<(?:[a-zA-Z_]+(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


def error_component(dialect: str) -> str:
    """The components/schemas name of a dialect's error body."""
    return "Error_" + re.sub(r"[^A-Za-z0-9]", "_", dialect)


def openapi_path(rule: str) -> str:
    """A werkzeug rule written as an OpenAPI path template: <int:x> and <path:x> become {x}."""
    return _VARIABLE.sub(r"{\1}", rule)


@functools.lru_cache(maxsize=1)
def body_components() -> tuple[dict[tuple[str, str], dict], dict[str, dict]]:
    """The request models' JSON schemas: (endpoint, model name) -> its $ref, and components/schemas."""
    models = sorted({model for group in BODIES.values() for model in group},
                    key=lambda model: (model.__module__, model.__qualname__))
    refs, definitions = models_json_schema([(model, "validation") for model in models],
                                           ref_template=COMPONENT_PREFIX + "{model}")
    by_model = {model: refs[(model, "validation")] for model in models}
    mapping = {(endpoint, model.__qualname__): by_model[model]
               for endpoint, group in BODIES.items() for model in group}
    return mapping, definitions.get("$defs", {})


def _dialect_of(app: Flask, rule: Rule) -> str | None:
    """The name of the dialect the rule's blueprint answers errors in (its ApiError handler's Dialect)."""
    blueprint = rule.endpoint.rpartition(".")[0] or None
    for handler in app.error_handler_spec.get(blueprint, {}).get(None, {}).values():
        owner = getattr(handler, "__self__", None)
        if owner is not None and hasattr(owner, "render") and hasattr(owner, "statuses"):
            return owner.name
    return for_path(rule.rule).name


def _parameters(rule: Rule) -> list[dict]:
    found = []
    for name in re.findall(_VARIABLE, rule.rule):
        converter = type(rule._converters.get(name)).__name__  # werkzeug keeps the converter per variable
        found.append({"name": name, "in": "path", "required": True,
                      "schema": _CONVERTER_SCHEMAS.get(converter, {"type": "string"})})
    return found


def _operation(app: Flask, rule: Rule, method: str, bodies: dict, keyed: bool) -> dict:
    dialect = _dialect_of(app, rule)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", openapi_path(rule.rule)).strip("_") or "root"
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}",
        "summary": rule.endpoint, "tags": [dialect or "other"], "responses": {"200": {"description": "success"}},
    }
    if dialect in ERROR_SCHEMAS:
        error = {"description": f"an error in the {dialect} dialect's shape",
                 "content": {"application/json": {"schema": {"$ref": COMPONENT_PREFIX + error_component(dialect)}}}}
        operation["responses"]["4XX"] = error
        operation["responses"]["5XX"] = error
    if rule.websocket:
        operation["description"] = "a WebSocket: only an Upgrade: websocket GET is answered"
    parameters = _parameters(rule)
    if parameters:
        operation["parameters"] = parameters
    models = BODIES.get(rule.endpoint, ()) if method in ("POST", "PUT", "PATCH", "DELETE") else ()
    if models:
        schemas = [bodies[(rule.endpoint, model.__qualname__)] for model in models]
        schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if keyed and is_open(method, rule.rule, services().settings.metrics_require_key):
        operation["security"] = []
    return operation


def build_document(app: Flask) -> dict:
    """The whole OpenAPI 3.1 document for the app's url_map (its security only when an api_key is set)."""
    bodies, definitions = body_components()
    keyed = bool(services().settings.api_key)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, sorted(r.methods or ()))):
        item = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            item[method.lower()] = _operation(app, rule, method, bodies, keyed)
    schemas = {**definitions, **{error_component(name): schema for name, schema in ERROR_SCHEMAS.items()}}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "ollama_server", "version": __version__,
                 "description": "OpenAI, vLLM, Ollama, TGI, Anthropic and llama-server dialects on one server."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }
    if keyed:  # without a key every route is open: saying otherwise would mislead generated clients
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


@bp.get(PATH)
def openapi_document():
    """The OpenAPI description of this server."""
    return jsonify(build_document(current_app))
