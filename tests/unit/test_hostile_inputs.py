"""What a hostile probe found to hold up, kept so that it stays so: malformed bodies on every dialect's POST
routes are 4xx in that dialect's error shape (never 5xx), and no API-key bypass works."""
from __future__ import annotations

import collections
import json
import re
from typing import Callable
from typing import Iterator

import pytest

from ollama_server.api.auth import OWN_LOGIN_PREFIXES
from ollama_server.api.auth import PUBLIC_READS
from ollama_server.api.ollama.manage import CopyBody
from ollama_server.api.ollama.manage import DeleteBody
from ollama_server.api.ollama.pull import PullBody
from ollama_server.api.ollama.schemas import ChatBody
from ollama_server.api.ollama.schemas import ChatMessage as OllamaMessage
from ollama_server.api.ollama.schemas import GenerateBody as OllamaGenerateBody
from ollama_server.api.ollama.schemas import Options
from ollama_server.api.ollama.schemas import ShowBody
from ollama_server.api.openai.schemas import ChatCompletionRequest
from ollama_server.api.openai.schemas import ChatMessage as OpenAIMessage
from ollama_server.api.openai.schemas import CompletionRequest
from ollama_server.api.openai.schemas import DetokenizeRequest
from ollama_server.api.openai.schemas import TokenizeRequest
from ollama_server.api.registry import ActiveBody
from ollama_server.jobs.requests import DataGenJobRequest
from ollama_server.jobs.requests import EvalJobRequest
from ollama_server.api.registry import RegisterBody
from ollama_server.api.tgi.schemas import GenerateBody as TgiGenerateBody
from ollama_server.api.tgi.schemas import Grammar
from ollama_server.api.tgi.schemas import Parameters
from ollama_server.services import EXTENSION_KEY

BODY_LIMIT = 64 * 1024  # a small max_request_bytes, so that the over-the-limit case costs little
HOLE = "\u2063hostile\u2063"  # stands for the raw JSON text spliced into a body


# --- the error shape of each dialect --------------------------------------------------------------
def openai_error(body, status: int) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (list(body) == ["error"] and isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
            and isinstance(error["message"], str) and bool(error["message"]) and isinstance(error["type"], str))


def vllm_error(body, status: int) -> bool:
    return openai_error(body, status) and body["error"]["code"] == status


def ollama_error(body, status: int) -> bool:
    return isinstance(body, dict) and list(body) == ["error"] and isinstance(body["error"], str) and bool(body["error"])


def companion_error(body, status: int) -> bool:
    """The companion seed's FastAPI {"detail"}, with our "error" beside it."""
    return (isinstance(body, dict) and set(body) == {"detail", "error"} and isinstance(body["detail"], str)
            and bool(body["detail"]) and body["detail"] == body["error"])


def tgi_error(body, status: int) -> bool:
    return (isinstance(body, dict) and set(body) == {"error", "error_type"} and isinstance(body["error"], str)
            and isinstance(body["error_type"], str))


CHAT = [{"role": "user", "content": "hi"}]
# route: (method, error shape, a valid body, the pydantic model whose fields are attacked, nested targets)
ROUTES: dict[str, tuple] = {
    "/v1/chat/completions": ("post", openai_error, {"model": "tiny", "messages": CHAT, "max_tokens": 2},
                             ChatCompletionRequest, {"messages.0": OpenAIMessage}),
    "/v1/completions": ("post", openai_error, {"model": "tiny", "prompt": "hi", "max_tokens": 2},
                        CompletionRequest, {}),
    "/api/generate": ("post", ollama_error, {"model": "tiny", "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 2}}, OllamaGenerateBody, {"options": Options}),
    "/api/chat": ("post", ollama_error, {"model": "tiny", "messages": CHAT, "stream": False,
                                         "options": {"num_predict": 2}}, ChatBody,
                  {"options": Options, "messages.0": OllamaMessage}),
    "/api/show": ("post", ollama_error, {"model": "tiny"}, ShowBody, {}),
    # A loopback IP literal: refused before any connection (allow_private_pull_urls is off), no DNS either.
    "/api/pull": ("post", ollama_error, {"model": "pulled:latest", "source": "http://127.0.0.1:9/m.gguf"},
                  PullBody, {}),
    "/api/delete": ("delete", ollama_error, {"model": "no-such-model"}, DeleteBody, {}),
    "/api/copy": ("post", ollama_error, {"source": "tiny", "destination": "copied"}, CopyBody, {}),
    "/models/register": ("post", companion_error, {"name": "registered", "path": "/nonexistent/registered.gguf"},
                         RegisterBody, {}),
    "/models/set_active": ("post", companion_error, {"model": "tiny"}, ActiveBody, {}),
    "/eval/jobs": ("post", companion_error, {"model_id": "tiny", "name": "n", "dataset_ref": "none.jsonl"},
                   EvalJobRequest, {}),
    "/data_gen/jobs": ("post", companion_error, {"model_id": "tiny", "strategy": "self_instruct",
                                                 "config": {"num_samples": 1}}, DataGenJobRequest, {}),
    "/generate": ("post", tgi_error, {"inputs": "hi", "parameters": {"max_new_tokens": 2}}, TgiGenerateBody,
                  {"parameters": Parameters}),
    "/generate_stream": ("post", tgi_error, {"inputs": "hi", "parameters": {"max_new_tokens": 2, "details": True}},
                         TgiGenerateBody, {"parameters": Parameters}),
    "/": ("post", tgi_error, {"inputs": "hi", "parameters": {"max_new_tokens": 2,
                                                             "grammar": {"type": "json", "value": None}}},
          TgiGenerateBody, {"parameters": Parameters, "parameters.grammar": Grammar}),
    "/tokenize": ("post", vllm_error, {"model": "tiny", "prompt": "hi"}, TokenizeRequest, {}),
    "/detokenize": ("post", vllm_error, {"model": "tiny", "tokens": [104, 105]}, DetokenizeRequest, {}),
}

# Raw JSON text: one of every JSON type, then the extremes a parser or a range check may trip on.
CORE_VALUES = ["null", "true", "false", "0", "-1", "1.5", '""', '"x"', "[]", "{}", '[{"a": 1}]', '"16"']
EXOTIC_VALUES = [
    "-2", "-3", "2147483648", "9223372036854775808", "18446744073709551616", "-9223372036854775809",
    "1" + "0" * 400, "-0.0", "1e308", "5e-324", "1e999", "-1e999", "NaN", "Infinity", "-Infinity",
    '"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udfff\\ud800"',
    json.dumps("é✓💥\u202e\ufeff\u0301", ensure_ascii=False),
    json.dumps("A" * 30000), '"../../etc/passwd"', '"%2e%2e%2fsecret"', '"a\\\\b"', '"true"', '"null"', '" "',
    "[null]", '[""]', "[1, 2, 3]", '["a", 1, null]', "[[]]", "[[1], []]", '{"": null}', '{"__proto__": {"x": 1}}',
    "[" * 64 + "]" * 64, '{"x":' * 128 + "1" + "}" * 128, "[" + ", ".join(["0"] * 5000) + "]",
    '{"type": "json_schema", "json_schema": {"schema": ' + '{"type": "array", "items": ' * 40 + "{}" + "}" * 40 + "}}",
]
# Zero-token prompts are excluded: the engine keeps such a request waiting until request_timeout (see
# test_a_prompt_of_zero_tokens_is_refused_not_left_to_hang below); the corpus pins what holds up.
HANGS = {("/v1/completions", "prompt", '""'), ("/v1/completions", "prompt", '[""]')}


def splice(body: dict, path: str, raw: str | None) -> bytes:
    """body with the field at dotted `path` set to the raw JSON text (None: the field removed)."""
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if raw is None:
        if isinstance(node, dict):
            node.pop(last, None)
        return json.dumps(body).encode()
    if isinstance(node, list):
        node[int(last)] = HOLE
    else:
        node[last] = HOLE
    return json.dumps(body, ensure_ascii=False).replace(json.dumps(HOLE, ensure_ascii=False), raw, 1).encode()


def field_attacks(route: str, base: dict, model, nested: dict) -> Iterator[tuple[str, bytes]]:
    """Every known field (nested ones too) with every core value, the exotic ones dealt out round-robin,
    and the field removed."""
    targets = [name for name in model.model_fields]
    for prefix, inner in nested.items():
        targets += [f"{prefix}.{name}" for name in inner.model_fields]
    for index, target in enumerate(targets):
        exotic = EXOTIC_VALUES[index % 4::4]  # every exotic value reaches about a quarter of the fields
        for raw in CORE_VALUES + exotic:
            if (route, target, raw) not in HANGS:
                yield f"{target}={raw[:40]}", splice(base, target, raw)
        yield f"{target} removed", splice(base, target, None)
    for prefix in nested:  # the nested object itself of the wrong kind
        for raw in CORE_VALUES:
            yield f"{prefix}={raw}", splice(base, prefix, raw)


def body_attacks(base: dict) -> Iterator[tuple[str, bytes]]:
    """Malformed bodies as a whole: empty, truncated, not an object, bad bytes, too deep, too big."""
    text = json.dumps(base).encode()
    yield "empty", b""
    yield "whitespace", b" \r\n\t "
    for cut in sorted({1, 2, len(text) // 3, len(text) // 2, len(text) - 1}):
        yield f"truncated at {cut}", text[:cut]
    for raw in (b"null", b"true", b"0", b"-1e999", b"NaN", b'"a string"', b"[]", b"[{}]", b"{}",
                b"[" + text + b"]"):
        yield f"body {raw[:20]!r}", raw
    yield "trailing garbage", text + b" trailing"
    yield "two objects", text + text
    yield "byte order mark", b"\xef\xbb\xbf" + text
    yield "invalid utf-8", text[:-1] + b', "x": "\xff\xfe"}'
    yield "raw NUL", text[:-1] + b', "x": "\x00"}'
    yield "control characters", text[:-1] + b', "x": "\x01\x1f"}'
    yield "single quotes", text.replace(b'"', b"'")
    yield "a comment", b"// comment\n" + text
    yield "duplicate keys", text[:-1] + b", " + text[1:]
    yield "deep arrays", b"[" * 30000 + b"]" * 30000
    yield "deep objects", b'{"a":' * 20000 + b"1" + b"}" * 20000
    yield "unclosed deep", b"[" * 60000
    yield "over the size limit", text[:-1] + b', "pad": "' + b"x" * (BODY_LIMIT + 1) + b'"}'


def corpus() -> Iterator[tuple[str, str, Callable, str, bytes]]:
    for route, (method, shape, base, model, nested) in ROUTES.items():
        for label, data in [*field_attacks(route, base, model, nested), *body_attacks(base)]:
            yield route, method, shape, label, data


@pytest.fixture
def hostile_client(make_app):
    # request_timeout short: a request the engine leaves hanging shows as a 408 (refused below), not a stall.
    return make_app(max_request_bytes=BODY_LIMIT, request_timeout=5).test_client()


def test_hostile_bodies_on_every_post_route_are_answered_in_the_routes_dialect_never_5xx(hostile_client):
    """Over 500 malformed bodies: each is 2xx, or a 4xx whose body is that dialect's JSON error."""
    counts: collections.Counter = collections.Counter()
    failures = []
    n = 0
    for route, method, shape, label, data in corpus():
        response = getattr(hostile_client, method)(route, data=data, content_type="application/json")
        body = response.get_data()  # a stream is read to its end: a failure there must not be a 5xx either
        n += 1
        counts[response.status_code] += 1
        status = response.status_code
        if status >= 500 or status == 408:
            failures.append((route, label, status, body[:300]))
        elif status >= 400:
            parsed = response.get_json(silent=True)
            if not response.is_json or parsed is None or not shape(parsed, status):
                failures.append((route, label, status, body[:300]))
    print(f"hostile corpus: {n} requests, {dict(sorted(counts.items()))}")
    assert n >= 500
    assert failures == []


@pytest.mark.parametrize("prompt", ["", [""]])
def test_a_prompt_of_zero_tokens_is_refused_not_left_to_hang(make_app, prompt):
    """An empty prompt (no tokens with a model that adds no BOS) must be a 400, not wait for the timeout."""
    client = make_app(request_timeout=1).test_client()
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": prompt})
    assert response.status_code == 400


# --- the API key ------------------------------------------------------------------------------------
KEY = "secret"
WRONG_HEADERS = [
    {}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong"}, {"Authorization": "bearer wrong"}, {"Authorization": "BEARER wrong"},
    {"Authorization": "Basic c2VjcmV0"}, {"Authorization": "Basic secret"}, {"Authorization": "Token secret"},
    {"Authorization": "secret"}, {"Authorization": "Bearersecret"}, {"Authorization": "Bearer  wrong"},
    {"Authorization": "Bearer secretx"}, {"Authorization": "Bearer xsecret"}, {"Authorization": "Bearer secre"},
    {"Authorization": "Bearer secretsecret"}, {"Authorization": "Bearer sec ret"},
    {"Authorization": "Bearer s\xe9cret"}, {"Authorization": "Bearer SECRET"},
    {"Authorization": "Bearer wrong, Bearer secret"}, {"X-Api-Key": "wrong"}, {"X-Api-Key": ""},
    {"X-Api-Key": KEY + "x"}, {"Api-Key": KEY},
    {"Proxy-Authorization": f"Bearer {KEY}"}, {"Cookie": f"api_key={KEY}"},
]
QUERY_KEYS = ["api_key=secret", "key=secret", "access_token=secret", "token=secret", "Authorization=Bearer%20secret"]


def concrete(rule) -> str:
    """A real path for a URL rule (sample values for its variables)."""
    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "x", re.sub(r"<int:[a-z_]+>", "1", rule.rule))


def protected_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route that needs the key: all but OPTIONS and the public reads."""
    found = []
    for rule in app.url_map.iter_rules():
        path = concrete(rule)
        for method in sorted(rule.methods - {"OPTIONS"}):
            if method in ("GET", "HEAD") and path in PUBLIC_READS:
                continue
            if path.startswith(OWN_LOGIN_PREFIXES):  # the dashboard's session login (test_dashboard_login.py)
                continue
            found.append((method, path))
    return found


@pytest.fixture
def keyed(make_app):
    return make_app(api_key=KEY).test_client()


def send(client, method: str, path: str, **kwargs):
    return client.open(path, method=method, data=b"{}", content_type="application/json", **kwargs)


def test_every_protected_route_refuses_every_wrong_or_misplaced_key(keyed):
    """No header variant, no query parameter and no other header stands in for 'Authorization: Bearer <key>'."""
    routes = protected_routes(keyed.application)
    assert len(routes) >= 25  # the whole url_map, not a hand-picked few
    leaks = []
    for method, path in routes:
        attempts = [(path, headers) for headers in WRONG_HEADERS]
        attempts += [(f"{path}?{query}", {}) for query in QUERY_KEYS]
        for target, headers in attempts:
            response = send(keyed, method, target, headers=headers)
            if response.status_code != 401:
                leaks.append((method, target, headers, response.status_code))
    assert leaks == []


def test_the_right_key_opens_a_protected_route(keyed, fake_backend):
    """The refusals above are about the key, not the route: with it, the same request is served."""
    assert keyed.get("/api/tags", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert keyed.get("/api/tags", headers={"X-API-Key": KEY}).status_code == 200  # the companion clients' header
    assert keyed.get("/api/tags").status_code == 401


PATH_TRICKS = [
    ("POST", "/v1//chat/completions"), ("POST", "//v1/chat/completions"), ("POST", "/V1/chat/completions"),
    ("POST", "/v1/chat/completions/"), ("POST", "/v1/chat%2fcompletions"), ("POST", "/v1%2fchat%2fcompletions"),
    ("GET", "/health/../v1/models"), ("GET", "/health/%2e%2e/v1/models"), ("GET", "/v1/models/"),
    ("GET", "/v1/./models"), ("GET", "/V1/MODELS"), ("GET", "/api/tags/"), ("GET", "/api//tags"),
    ("POST", "/api/generate/"), ("POST", "/API/GENERATE"), ("GET", "/health/../api/tags"),
    ("GET", "/version/../api/tags"), ("GET", "/%2e/api/tags"), ("POST", "/generate%00"),
    ("GET", "/api/tags;/health"), ("GET", "/api/tags%23/health"), ("GET", "/models/active/"),
    ("HEAD", "/api/tags"), ("HEAD", "/v1/models"), ("HEAD", "/api/ps"), ("HEAD", "/models"),
    ("HEAD", "/info"), ("GET", "/static/../api/tags"),
]


@pytest.mark.parametrize("method,path", PATH_TRICKS)
def test_path_tricks_never_reach_a_protected_route_without_the_key(keyed, method, path):
    """Doubled slashes, case, trailing slashes, encoded slashes and dot segments: 401, or 404/405, never data."""
    if path.startswith("//"):
        # The test client would read "//v1/..." as a host name; a server gets it as the path itself.
        response = keyed.open("/", method=method, data=b"{}", content_type="application/json",
                              environ_overrides={"PATH_INFO": path})
    else:
        response = send(keyed, method, path)
    assert response.status_code in (401, 404, 405), (response.status_code, response.get_data()[:200])
    assert b"models" not in response.get_data()


def test_options_on_protected_routes_give_no_data(keyed):
    """OPTIONS skips the key check (preflight), so it must carry nothing but the allowed methods."""
    for rule in keyed.application.url_map.iter_rules():
        if rule.websocket:  # matches only an Upgrade: websocket GET; anything else is werkzeug's bare 400
            continue
        response = keyed.open(concrete(rule), method="OPTIONS")
        assert response.status_code in (200, 204, 401, 404, 405), (rule.rule, response.status_code)
        assert response.get_data() == b"", rule.rule


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_stays_open_with_an_api_key(keyed, method):
    """Probes and load balancers need /health without the key."""
    response = keyed.open("/health", method=method)
    assert response.status_code == 200
    if method == "GET":  # degraded: make_app's placeholder model files are not readable GGUFs
        assert response.get_json()["status"] in ("ok", "degraded")


def test_the_services_under_test_have_the_key_set(keyed):
    """Guards the tests above: an empty key would make every route open and these tests vacuous."""
    assert keyed.application.extensions[EXTENSION_KEY].settings.api_key == KEY
