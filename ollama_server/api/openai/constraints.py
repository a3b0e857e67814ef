"""Output constraints on the OpenAI routes: response_format, vLLM's guided_* and structured_outputs,
llama-server's grammar and json_schema, each turned into the engine's SamplingParams fields."""
from __future__ import annotations

import json
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.openai.schemas import StructuredOutputs
from ollama_server.api.openai.schemas import _Sampling


def _json_schema(response_format: Optional[dict]) -> Optional[dict]:
    """The schema response_format asks for ({} = any JSON), None for text; llama-server's json_object may carry
    a `schema` of its own."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema", {})
        if not isinstance(schema, dict):
            raise ApiError("invalid_request", "response_format.schema must be an object", param="response_format")
        return schema
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ApiError("invalid_request", "response_format.json_schema.schema must be an object",
                           param="response_format")
        return schema
    raise ApiError("invalid_request", f"unsupported response_format type {kind!r}", param="response_format")


def _schema_value(value, field: str) -> dict:
    """A JSON schema given as an object or as a JSON string (vLLM takes both)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError("invalid_request", f"{field} is not valid JSON", param=field) from None
    if not isinstance(value, dict):
        raise ApiError("invalid_request", f"{field} must be a JSON schema object", param=field)
    return value


def _refuse(field: str, why: str) -> ApiError:
    return ApiError("invalid_request", f"{field} is not supported: {why}", param=field)


def _structured(so: StructuredOutputs) -> list[tuple[str, str, object]]:
    for key, value in (so.model_extra or {}).items():
        if value is not None:
            raise _refuse(f"structured_outputs.{key}", "only json, regex, choice, grammar and json_object are")
    found: list[tuple[str, str, object]] = []
    if so.json_schema is not None:
        found.append(("structured_outputs.json", "json_schema", _schema_value(so.json_schema,
                                                                              "structured_outputs.json")))
    if so.regex is not None:
        found.append(("structured_outputs.regex", "regex", so.regex))
    if so.choice is not None:
        found.append(("structured_outputs.choice", "choice", tuple(so.choice)))
    if so.grammar is not None:
        found.append(("structured_outputs.grammar", "grammar", so.grammar))
    if so.json_object:
        found.append(("structured_outputs.json_object", "json_schema", {}))
    return found


def constraint_of(body: _Sampling) -> dict:
    """SamplingParams fields for the request's one output constraint ({} without one); 400 naming the field
    for two constraints at once or one we cannot honour (never silently dropped)."""
    if body.guided_whitespace_pattern is not None:
        raise _refuse("guided_whitespace_pattern", "JSON grammars here use their own whitespace rules")
    if body.structural_tag is not None:
        raise _refuse("structural_tag", "structural tags cannot be enforced by this server")
    found: list[tuple[str, str, object]] = []
    if body.guided_json is not None:
        found.append(("guided_json", "json_schema", _schema_value(body.guided_json, "guided_json")))
    if body.guided_regex is not None:
        found.append(("guided_regex", "regex", body.guided_regex))
    if body.guided_choice is not None:
        found.append(("guided_choice", "choice", tuple(body.guided_choice)))
    if body.guided_grammar is not None:
        found.append(("guided_grammar", "grammar", body.guided_grammar))
    if body.structured_outputs is not None:
        found.extend(_structured(body.structured_outputs))
    if body.grammar is not None:
        found.append(("grammar", "grammar", body.grammar))
    if body.json_schema is not None:
        found.append(("json_schema", "json_schema", body.json_schema))
    schema = _json_schema(body.response_format)
    if schema is not None:
        found.append(("response_format", "json_schema", schema))
    if len(found) > 1:
        names = " and ".join(field for field, _, _ in found)
        raise ApiError("invalid_request", f"give one output constraint, not several: {names}", param=found[1][0])
    if not found:
        return {}
    field, kind, value = found[0]
    return {kind: value, "schema_field": field}
