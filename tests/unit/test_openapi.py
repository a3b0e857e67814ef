"""GET /openapi.json: every url_map rule described, a structurally valid OpenAPI 3.1 document, the dialects'
request body schemas from their pydantic models, their error shapes, and the API key policy."""
from __future__ import annotations

import re

import pytest

from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openapi import openapi_path

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
RESPONSE_KEY = re.compile(r"^(default|[1-5][0-9]{2}|[1-5]XX)$")
COMPONENT_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
TEMPLATE_VARIABLE = re.compile(r"\{([^}]+)\}")
KEY = "secret"
GENERATION_ROUTES = ["/v1/chat/completions", "/v1/completions", "/api/generate", "/api/chat", "/generate",
                     "/v1/embeddings", "/v1/messages", "/v1/responses", "/api/embed", "/tokenize", "/infill"]


@pytest.fixture
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def refs_in(node) -> list[str]:
    """Every $ref value anywhere in a JSON value."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


def resolve(document: dict, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def body_schema(document: dict, path: str, method: str = "post") -> dict:
    """The request body's schema, its $ref (or the first of an anyOf) followed."""
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    if "anyOf" in schema:
        schema = schema["anyOf"][0]
    return resolve(document, schema["$ref"]) if "$ref" in schema else schema


def structural_problems(document: dict) -> list[str]:
    """What makes the document invalid OpenAPI 3.1 (the rules of the spec's required fields and templates)."""
    problems = []
    if not re.fullmatch(r"3\.1\.\d+", str(document.get("openapi"))):
        problems.append(f"openapi version {document.get('openapi')!r}")
    info = document.get("info", {})
    if not (isinstance(info.get("title"), str) and isinstance(info.get("version"), str)):
        problems.append("info.title / info.version")
    schemes = document.get("components", {}).get("securitySchemes", {})
    for name in document.get("components", {}).get("schemas", {}):
        if not COMPONENT_NAME.match(name):
            problems.append(f"component name {name!r}")
    operation_ids = []
    for path, item in document.get("paths", {}).items():
        if not path.startswith("/"):
            problems.append(f"path {path!r} does not start with /")
        variables = set(TEMPLATE_VARIABLE.findall(path))
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                problems.append(f"{path}: {method} is not an HTTP method")
                continue
            operation_ids.append(operation.get("operationId"))
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            if declared != variables:
                problems.append(f"{method} {path}: path parameters {declared} for template {variables}")
            if any(p.get("in") == "path" and p.get("required") is not True for p in operation.get("parameters", [])):
                problems.append(f"{method} {path}: a path parameter not required")
            responses = operation.get("responses")
            if not responses:
                problems.append(f"{method} {path}: no responses")
            for key, response in (responses or {}).items():
                if not RESPONSE_KEY.match(key) or not isinstance(response.get("description"), str):
                    problems.append(f"{method} {path}: response {key}")
            body = operation.get("requestBody")
            if body is not None and not body.get("content"):
                problems.append(f"{method} {path}: requestBody without content")
            for requirement in operation.get("security", []) + document.get("security", []):
                problems += [f"{method} {path}: unknown scheme {s}" for s in requirement if s not in schemes]
    if len(operation_ids) != len(set(operation_ids)) or None in operation_ids:
        problems.append("operationIds missing or not unique")
    for ref in refs_in(document):
        try:
            resolve(document, ref)
        except (KeyError, AssertionError):
            problems.append(f"dangling $ref {ref}")
    return problems


def test_it_describes_every_rule_of_the_url_map_with_each_of_its_methods(client, document):
    missing = []
    for rule in client.application.url_map.iter_rules():
        item = document["paths"].get(openapi_path(rule.rule), {})
        missing += [(rule.rule, method) for method in rule.methods - {"HEAD", "OPTIONS"}
                    if method.lower() not in item]
    assert missing == []
    assert "/openapi.json" in document["paths"]  # itself too
    assert len(document["paths"]) >= 100


def test_the_document_is_structurally_valid_openapi_3_1(document):
    assert structural_problems(document) == []


def test_the_structural_check_catches_a_broken_document(document):
    """Guards the check above: it must fail on a dangling $ref, a missing path parameter and a bad version."""
    broken = {**document, "openapi": "3.0.0",
              "paths": {**document["paths"], "/x/{y}": {"get": {"operationId": "x", "responses": {
                  "200": {"description": "ok", "content": {"application/json": {
                      "schema": {"$ref": "#/components/schemas/Nowhere"}}}}}}}}}
    problems = structural_problems(broken)
    assert any("openapi version" in p for p in problems)
    assert any("path parameters" in p and "/x/{y}" in p for p in problems)
    assert any("dangling $ref #/components/schemas/Nowhere" in p for p in problems)


def test_path_parameters_carry_their_converters_type(document):
    silence = document["paths"]["/api/alerts/silence/{silence_id}"]["delete"]["parameters"]
    assert silence == [{"name": "silence_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    model = document["paths"]["/v1/models/{model_id}"]["get"]["parameters"]
    assert model[0]["schema"] == {"type": "string"}


@pytest.mark.parametrize("path", GENERATION_ROUTES)
def test_generation_and_embedding_routes_have_a_body_schema_with_properties(document, path):
    schema = body_schema(document, path)
    assert schema["type"] == "object" and schema["properties"]


def test_body_schemas_are_the_pydantic_models_the_dialects_parse_with(document):
    chat = body_schema(document, "/v1/chat/completions")
    assert set(chat["properties"]) == set(ChatCompletionRequest.model_fields)
    assert "messages" in chat["required"]
    assert chat["properties"]["n"]["maximum"] == 8  # the model's own bound, not a copy
    messages = body_schema(document, "/v1/messages")
    assert set(messages["properties"]) == set(MessagesRequest.model_fields)
    assert {"model", "max_tokens", "messages"} <= set(messages["required"])
    # nested models live under components/schemas, reached by $ref
    item = chat["properties"]["messages"]["items"]
    assert resolve(document, item["$ref"])["properties"]["role"]["enum"][:2] == ["system", "developer"]
    assert not any(ref.startswith("#/$defs") for ref in refs_in(document))


def test_routes_that_tell_two_bodies_apart_offer_both(document):
    tokenize = document["paths"]["/tokenize"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    properties = [set(resolve(document, option["$ref"])["properties"]) for option in tokenize["anyOf"]]
    assert any("prompt" in p and "messages" in p for p in properties)  # vLLM
    assert any("inputs" in p for p in properties)                     # TGI
    generate = document["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(generate["anyOf"]) == 2  # TGI's and the companion seed's


@pytest.mark.parametrize("path, method, dialect", [
    ("/v1/chat/completions", "post", "openai"), ("/v1/messages", "post", "anthropic"),
    ("/api/generate", "post", "ollama"), ("/generate", "post", "tgi"), ("/tokenize", "post", "vllm"),
    ("/infill", "post", "llama-server"), ("/models/register", "post", "companion"), ("/health", "get", "plain"),
])
def test_each_route_names_its_dialects_error_shape(document, path, method, dialect):
    error = document["paths"][path][method]["responses"]["4XX"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error_" + dialect.replace("-", "_")}
    assert document["paths"][path][method]["tags"] == [dialect]


def test_the_error_schemas_match_real_error_bodies(client, document):
    """The documented error shape is what the route answers for a bad body."""
    schemas = document["components"]["schemas"]
    anthropic = client.post("/v1/messages", data=b"{", content_type="application/json")
    assert anthropic.status_code == 400
    assert set(anthropic.get_json()) == set(schemas["Error_anthropic"]["required"])
    assert set(anthropic.get_json()["error"]) == set(schemas["Error_anthropic"]["properties"]["error"]["required"])
    tgi = client.post("/generate", data=b"[]", content_type="application/json")
    assert tgi.status_code == 422 and set(tgi.get_json()) == set(schemas["Error_tgi"]["required"])
    openai = client.post("/v1/chat/completions", json={"messages": "no"})
    assert set(openai.get_json()["error"]) == set(schemas["Error_openai"]["properties"]["error"]["required"])


def test_without_an_api_key_the_document_claims_no_security(document):
    assert "security" not in document
    assert all("security" not in op for item in document["paths"].values() for op in item.values())


def test_with_an_api_key_it_needs_the_key_and_marks_the_open_reads(make_app):
    client = make_app(api_key=KEY).test_client()
    assert client.get("/openapi.json").status_code == 401
    response = client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    document = response.get_json()
    assert document["security"] == [{"bearer": []}, {"apiKey": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in document["paths"]["/v1/chat/completions"]["post"]  # the document-wide key applies
    assert structural_problems(document) == []
