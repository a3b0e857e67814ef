"""The bad-input corpus: malformed requests for every dialect's body routes, each field's mutations generated
from the body schemas the server serves at /openapi.json, plus hand-written malformed bodies and headers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from typing import Callable
from typing import Iterator
from typing import Optional

from tests.unit.test_hostile_inputs import ollama_error
from tests.unit.test_hostile_inputs import openai_error
from tests.unit.test_hostile_inputs import tgi_error
from tests.unit.test_hostile_inputs import vllm_error

MODEL = "gemma3:270m"
HOLE = "\u2063corpus\u2063"  # stands for the raw JSON text spliced into a body
JSON = {"Content-Type": "application/json"}
TEN_MB = 10 * 1000 * 1000


def anthropic_error(body, status: int) -> bool:
    """Anthropic's {"type": "error", "error": {"type", "message"}}."""
    error = body.get("error") if isinstance(body, dict) else None
    return (isinstance(error, dict) and body.get("type") == "error" and set(body) == {"type", "error"}
            and isinstance(error.get("type"), str) and isinstance(error.get("message"), str) and bool(error["message"]))


def llama_server_error(body, status: int) -> bool:
    """llama-server's {"error": {"code": status, "message", "type"}}."""
    error = body.get("error") if isinstance(body, dict) else None
    return (isinstance(error, dict) and set(error) == {"code", "message", "type"} and error["code"] == status
            and isinstance(error["message"], str) and bool(error["message"]))


# The error body of each dialect, by the names /openapi.json tags its routes with ("plain" is {"error": "..."}).
SHAPES: dict[str, Callable] = {"openai": openai_error, "vllm": vllm_error, "ollama": ollama_error,
                               "plain": ollama_error, "tgi": tgi_error, "anthropic": anthropic_error,
                               "llama-server": llama_server_error,
                               # /tokenize: a body it cannot read as TGI's is vLLM's (a BOM still looks like TGI's)
                               "vllm or tgi": lambda body, status: vllm_error(body, status) or tgi_error(body, status)}


@dataclass(frozen=True)
class Route:
    """A body route the corpus attacks: a valid body (generation kept to two tokens) and its error dialect."""

    path: str
    dialect: str
    base: dict
    # field -> the mutations that would lift the two-token bound (a long generation, not a malformed request)
    unbounded: dict = field(default_factory=dict)
    label: str = ""
    garbage_dialect: str = ""  # the dialect of a body the route cannot read at all, when not `dialect`
    # fields whose mutations another route of the same code already gets (its own fields and bodies stay)
    skip: tuple = ()


CHAT = [{"role": "user", "content": "hi"}]
# Ollama's null / -1 / huge num_predict generate to the end of the context, a huge num_ctx reloads the model
# with its whole trained context, and an `options` without num_predict has no bound at all.
OLLAMA_UNBOUNDED = {"options": {"null", "deep nesting"}, "options.num_predict": {"null", "1e308", "10**30", "negative"},
                    "options.num_ctx": {"1e308", "10**30"}}
# TGI's unset max_new_tokens is 100 tokens.
TGI_UNBOUNDED = {"parameters": {"null", "deep nesting"}, "parameters.max_new_tokens": {"null"}}
TGI_BASE = {"inputs": "hi", "parameters": {"max_new_tokens": 2}}
ROUTES = [
    Route("/v1/chat/completions", "openai", {"model": MODEL, "messages": CHAT, "max_tokens": 2}),
    Route("/v1/completions", "openai", {"model": MODEL, "prompt": "hi", "max_tokens": 2},
          {"max_tokens": {"null"}}),  # null: the rest of the context
    Route("/v1/embeddings", "openai", {"model": MODEL, "input": "hi"}),
    Route("/v1/responses", "openai", {"model": MODEL, "input": "hi", "max_output_tokens": 2}),
    Route("/v1/messages", "anthropic", {"model": MODEL, "messages": CHAT, "max_tokens": 2},
          {"max_tokens": {"10**30"}}),  # an upper bound: capped at the end of the context
    Route("/v1/messages/count_tokens", "anthropic", {"model": MODEL, "messages": CHAT}),
    Route("/tokenize", "vllm", {"model": MODEL, "prompt": "hi"}),
    Route("/detokenize", "vllm", {"model": MODEL, "tokens": [2, 105]}),
    Route("/api/generate", "ollama", {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
          OLLAMA_UNBOUNDED),
    Route("/api/chat", "ollama", {"model": MODEL, "messages": CHAT, "stream": False, "options": {"num_predict": 2}},
          OLLAMA_UNBOUNDED, skip=("options.",)),  # /api/generate's options, parsed by the same model
    Route("/api/embed", "ollama", {"model": MODEL, "input": "hi"}),
    Route("/api/embeddings", "ollama", {"model": MODEL, "prompt": "hi"}),
    Route("/api/show", "ollama", {"model": MODEL}),
    Route("/generate", "tgi", TGI_BASE, TGI_UNBOUNDED),
    # /generate's body and translation: their parameters get /generate's mutations
    Route("/generate_stream", "tgi", TGI_BASE, TGI_UNBOUNDED, skip=("parameters.",)),
    Route("/", "tgi", TGI_BASE, TGI_UNBOUNDED, skip=("parameters.",)),
    # A body without `inputs` (or no JSON object at all) is vLLM's to answer.
    Route("/tokenize", "tgi", {"inputs": "hi"}, label="/tokenize (TGI)", garbage_dialect="vllm or tgi"),
    Route("/infill", "llama-server", {"model": MODEL, "input_prefix": "a", "input_suffix": "b", "n_predict": 2}),
]


@dataclass(frozen=True)
class Case:
    """One malformed request and what its answer must look like."""

    label: str
    path: str
    data: bytes | Callable[[], Iterator[bytes]]  # a callable: sent chunked
    shape: Optional[Callable] = None             # the error body's check; None: answered before the app
    headers: dict = field(default_factory=lambda: dict(JSON))
    method: str = "POST"
    statuses: frozenset = frozenset()            # when set, the status must be one of these


# --- values (raw JSON text) ---------------------------------------------------------------------------
HUGE_INT = "1" + "0" * 30
DEEP = '{"a":' * 64 + "[" * 64 + "1" + "]" * 64 + "}" * 64
# Every property gets these (raw JSON text)...
ALWAYS = {"null": "null", "lone surrogate": '"a\\ud800b\\udfff"'}
# ...and DEALT of these, dealt out in turn, so that each reaches about half of the properties and the whole
# corpus stays within its time (each accepted body is a real generation).
DEALT_OUT = {
    "1e308": "1e308", "10**30": HUGE_INT, "negative": "-1", "empty string": '""', "deep nesting": DEEP,
    "unicode": json.dumps("é✓💥\u202e\ufeff\u0301\u0000\U0010ffff", ensure_ascii=False),
}
DEALT = 3
WRONG_TYPE_CANDIDATES = [("object", '{"x": 1}'), ("array", "[1]"), ("string", '"x"'), ("integer", "7"),
                         ("boolean", "true")]


def resolve(document: dict, schema: dict) -> dict:
    """A schema with its $ref followed (refs point under components/schemas)."""
    while "$ref" in schema:
        node = document
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def allowed_types(document: dict, schema: dict) -> set[str]:
    """The JSON types a schema admits ({"any"} when it says nothing)."""
    schema = resolve(document, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return set().union(*(allowed_types(document, option) for option in options))
    if "const" in schema or "enum" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        return {json_type(value) for value in values}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return kinds | ({"integer"} if "number" in kinds else set())


def json_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}[type(value)]


def wrong_type(document: dict, schema: dict) -> str:
    """A raw JSON value of a type the schema does not admit (an object when it admits anything)."""
    kinds = allowed_types(document, schema)
    return next((raw for kind, raw in WRONG_TYPE_CANDIDATES if kind not in kinds), '{"x": 1}')


def object_schema(document: dict, schema: dict) -> Optional[dict]:
    """The object schema with properties among the options of `schema`, if any."""
    schema = resolve(document, schema)
    for option in [schema, *(schema.get("anyOf") or [])]:
        option = resolve(document, option)
        if option.get("type") == "object" and option.get("properties"):
            return option
    return None


def splice(body: dict, path: str, raw: Optional[str]) -> bytes:
    """The body with the field at dotted `path` set to raw JSON text (None: the field removed)."""
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if raw is None:
        node.pop(last, None)
        return json.dumps(body).encode()
    node[int(last) if isinstance(node, list) else last] = HOLE
    return json.dumps(body, ensure_ascii=False).replace(json.dumps(HOLE, ensure_ascii=False), raw, 1).encode()


def targets(document: dict, schema: dict, base, prefix: str = "") -> Iterator[tuple[str, dict, bool, object]]:
    """(dotted path, schema, required, value in the base body) of every property, and one level into the
    objects (and first list items) the base body fills in."""
    schema = resolve(document, schema)
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        value = base.get(name) if isinstance(base, dict) else None
        yield path, prop, name in required, value
        if prefix:
            continue
        inner = object_schema(document, prop)
        if inner is not None and isinstance(value, dict):
            yield from targets(document, inner, value, f"{path}.")
        items = resolve(document, prop).get("items") or next(
            (option.get("items") for option in resolve(document, prop).get("anyOf", []) if "items" in option), None)
        if items is not None and isinstance(value, list) and value and isinstance(value[0], dict):
            inner = object_schema(document, items)
            if inner is not None:
                yield from targets(document, inner, value[0], f"{path}.0.")


def body_schema(document: dict, route: Route) -> dict:
    """The route's body schema from the served document (of two bodies, the one whose fields the base uses)."""
    operation = document["paths"][route.path]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    options = schema.get("anyOf", [schema])
    return max((resolve(document, o) for o in options),
               key=lambda o: len(set(o.get("properties", {})) & set(route.base)))


def field_cases(document: dict, route: Route) -> Iterator[Case]:
    """Per property: a wrong type, null, a lone surrogate and three of 1e308, 10**30, -1, "", deep nesting,
    unicode; an unknown field inside objects; removal of required ones."""
    shape = SHAPES[route.dialect]
    name = route.label or route.path
    kinds = list(DEALT_OUT)
    found = [t for t in targets(document, body_schema(document, route), route.base)
             if not t[0].startswith(route.skip)]
    for index, (path, prop, required, value) in enumerate(found):
        dealt = {kinds[(index + k) % len(kinds)] for k in range(DEALT)}
        mutations = {**ALWAYS, **{k: raw for k, raw in DEALT_OUT.items() if k in dealt}}
        lifting = route.unbounded.get(path, set())
        values = {"wrong type": wrong_type(document, prop)}
        values.update({k: raw for k, raw in mutations.items() if k not in lifting})
        if isinstance(value, dict):
            values["unknown field"] = json.dumps({**value, "no_such_field_\u2603": {"x": [1]}}, ensure_ascii=False)
        for kind, raw in values.items():
            yield Case(f"{name} {path}: {kind}", route.path, splice(route.base, path, raw), shape)
        if required:
            removed_shape = SHAPES[route.garbage_dialect or route.dialect]
            yield Case(f"{name} {path}: removed", route.path, splice(route.base, path, None), removed_shape)
    unknown = json.dumps({**route.base, "no_such_field": [None, {"x": HUGE_INT}]})
    yield Case(f"{name}: unknown top-level field", route.path, unknown.encode(), shape)


def body_cases(route: Route, app_wide: Callable[[str], str]) -> Iterator[Case]:
    """Malformed bodies as a whole, and bodies the wrong Content-Type refuses before the route."""
    shape = SHAPES[route.garbage_dialect or route.dialect]
    name = route.label or route.path
    text = json.dumps(route.base).encode()
    raw_bodies = {
        "empty body": b"", "whitespace body": b" \r\n\t ", "truncated after 1 byte": text[:1],
        "truncated in half": text[:len(text) // 2], "truncated before the last brace": text[:-1],
        "not JSON": b"hello, world", "XML": b"<request><model>x</model></request>", "a JSON array": b"[]",
        "a JSON string": b'"body"', "a JSON number": b"1e999", "JSON null": b"null", "NaN": b"NaN",
        "invalid UTF-8": text[:-1] + b', "x": "\xff\xfe\xc3"}', "byte order mark": b"\xef\xbb\xbf" + text,
        "trailing garbage": text + b" }}}", "two objects": text + text, "raw NUL": text[:-1] + b', "x": "\x00"}',
        "deep arrays": b"[" * 50000 + b"]" * 50000, "unclosed deep objects": b'{"a":' * 50000,
    }
    for kind, data in raw_bodies.items():
        yield Case(f"{name}: {kind}", route.path, data, shape)
    refused_before = SHAPES[app_wide(route.path)]  # the Content-Type check runs before any blueprint
    for kind, headers in {"text/plain": {"Content-Type": "text/plain"}, "no Content-Type": {},
                          "multipart": {"Content-Type": "multipart/form-data; boundary=x"},
                          "bogus media type": {"Content-Type": "application/jsonx; charset=nope"}}.items():
        yield Case(f"{name}: {kind}", route.path, text, refused_before, headers=headers,
                   statuses=frozenset({415}))
    yield Case(f"{name}: JSON with a wrong charset", route.path, text, shape,
               headers={"Content-Type": "application/json; charset=utf-32"})


def limit_cases(limit: int) -> Iterator[Case]:
    """Bodies around max_request_bytes (10 MB must be 413), chunked bodies, huge headers and URLs."""
    for route in ROUTES[:1] + [r for r in ROUTES if r.path in ("/api/generate", "/generate", "/v1/messages")]:
        padded = json.dumps({**route.base, "pad": "x" * TEN_MB}).encode()
        yield Case(f"{route.path}: a 10 MB body", route.path, padded, SHAPES[route.dialect],
                   statuses=frozenset({413}))
    chat = ROUTES[0]
    under = json.dumps({**chat.base, "pad": ""}).encode()
    under = json.dumps({**chat.base, "pad": "x" * (limit - len(under) - 16)}).encode()
    assert len(under) < limit
    yield Case("/v1/chat/completions: a body just under the limit", chat.path, under, openai_error)
    over = json.dumps({**chat.base, "pad": "x" * limit}).encode()
    yield Case("/v1/chat/completions: a chunked body over the limit", chat.path,
               lambda: (over[i:i + 65536] for i in range(0, len(over), 65536)), openai_error,
               statuses=frozenset({413}))
    valid = json.dumps(chat.base).encode()
    yield Case("/v1/chat/completions: a valid chunked body", chat.path, lambda: iter([valid[:7], valid[7:]]),
               openai_error)
    for kind, headers in {"a 64 KiB header": {**JSON, "X-Big": "x" * 65536},
                          "300 headers": {**JSON, **{f"X-H{i}": "v" for i in range(300)}},
                          "a header of 4 KiB of unicode": {**JSON, "X-Uni": "é" * 4096}}.items():
        yield Case(f"/v1/chat/completions: {kind}", chat.path, valid, None, headers=headers)
    yield Case("/v1/chat/completions: a 64 KiB query string", chat.path + "?q=" + "x" * 65536, valid, None)


def build(document: dict, limit: int, app_wide: Callable[[str], str]) -> list[Case]:
    """The whole corpus, in a fixed order."""
    cases: list[Case] = []
    for route in ROUTES:
        cases += [*field_cases(document, route), *body_cases(route, app_wide)]
    return cases + list(limit_cases(limit))
