"""Generated JSON schemas through the real server in three dialects: each one is served or refused with a
400/422, and the worker never dies (it once did, with a SIGSEGV, on one schema)."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from tests.conftest import children_of

pytestmark = pytest.mark.model
COUNTS: collections.Counter = collections.Counter()

counts = st.one_of(st.integers(0, 6), st.integers(0, 3000), st.sampled_from([100, 1000, 100000, 10**9]),
                   st.integers(-3, -1))
names = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False,
                    allow_infinity=False), st.text(max_size=8))


@st.composite
def repeated_string(draw):
    schema: dict = {"type": "string"}
    if draw(st.booleans()):
        schema["minLength"] = draw(counts)
    if draw(st.booleans()):
        schema["maxLength"] = draw(counts)
    return schema


leaves = st.one_of(
    st.builds(lambda t: {"type": t}, st.sampled_from(["string", "integer", "number", "boolean", "null", "object",
                                                      "array", "no-such-type"])),
    repeated_string(),
    st.builds(lambda p: {"type": "string", "pattern": p},
              st.sampled_from(["^[a-z]+$", "a{3,5}", "(ab){2}c?", "x{1000000}", "[0-9]{2,4}-[a-z]{1,3}",
                               "((((((a))))))", "a{2,}", "(", "[z-a]", "\\d{9999}"])),
    st.builds(lambda values: {"enum": values}, st.lists(scalars, min_size=1, max_size=4)),
    st.builds(lambda value: {"const": value}, scalars),
    st.builds(lambda key, value: {"type": "integer", key: value},
              st.sampled_from(["minimum", "maximum", "multipleOf", "exclusiveMinimum"]), st.integers(-5, 5)),
    st.sampled_from([{"not": {"type": "string"}}, {"$ref": "https://example.com/s.json"}, {"$ref": "#/nowhere"},
                     {"type": "array", "uniqueItems": True}, {"if": {}, "then": {}}, {"format": "date-time"},
                     {"type": "string", "format": "uuid"}, {}]),
)


def containers(children):
    objects = st.builds(
        lambda props, required, extra: {"type": "object", "properties": props,
                                        "required": sorted(required & set(props)), **extra},
        st.dictionaries(names, children, max_size=4), st.sets(names, max_size=3),
        st.sampled_from([{}, {"additionalProperties": False}, {"additionalProperties": {"type": "integer"}}]))

    @st.composite
    def arrays(draw):
        schema = {"type": "array", "items": draw(children)}
        if draw(st.booleans()):
            schema["minItems"] = draw(counts)
        if draw(st.booleans()):
            schema["maxItems"] = draw(counts)
        return schema
    unions = st.builds(lambda key, options: {key: options}, st.sampled_from(["anyOf", "oneOf", "allOf"]),
                       st.lists(children, min_size=1, max_size=3))
    return st.one_of(objects, arrays(), unions)


@st.composite
def deep_chains(draw):
    schema = draw(leaves)
    for _ in range(draw(st.integers(10, 40))):
        schema = {"type": "array", "items": schema} if draw(st.booleans()) else \
            {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


schemas = st.one_of(st.recursive(leaves, containers, max_leaves=10), deep_chains())


def request_for(dialect: str, schema: dict) -> tuple[str, dict]:
    if dialect == "openai":
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": "Answer in JSON."}],
                                        "max_tokens": 4, "temperature": 0,
                                        "response_format": {"type": "json_schema",
                                                            "json_schema": {"name": "x", "schema": schema}}}
    if dialect == "ollama":
        return "/api/generate", {"model": "gemma3:270m", "prompt": "JSON:", "stream": False, "format": schema,
                                 "options": {"num_predict": 4, "temperature": 0}}
    return "/generate", {"inputs": "JSON:", "parameters": {"max_new_tokens": 4,
                                                          "grammar": {"type": "json", "value": schema}}}


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("fuzz"), {"parallel_slots": 2, "default_context_size": 512}) as server:
        # the gunicorn worker that serves (the master forks it; a crash would make it a new pid)
        server.worker_pid = max(children_of(server.process.pid))
        yield server


# The probe's two schemas: the first overflowed llama.cpp's grammar parser (SIGSEGV, every request in
# flight died with the worker), the second grew the worker by gigabytes until the OOM killer came.
PROBES = [
    ("openai", {"type": "array", "minItems": 100, "maxItems": 100000,
                "items": {"type": "array", "minItems": 100, "maxItems": 1000}}, "max_schema_repetition"),
    ("ollama", {"type": "string", "minLength": 1000000000, "maxLength": 1000000000}, "max_schema_repetition"),
    ("tgi", {"type": "array", "minItems": 100, "maxItems": 100000,
             "items": {"type": "array", "minItems": 100, "maxItems": 1000}}, "max_schema_repetition"),
]


@pytest.mark.parametrize("dialect, schema, limit", PROBES, ids=[d for d, _, _ in PROBES])
def test_the_probes_schemas_are_refused_naming_the_limit(fuzz_server, dialect, schema, limit):
    path, body = request_for(dialect, schema)
    response = requests.post(fuzz_server.url + path, json=body, timeout=120)
    assert response.status_code == (422 if dialect == "tgi" else 400)
    assert limit in response.text
    assert requests.get(fuzz_server.url + "/health", timeout=10).status_code == 200
    assert max(children_of(fuzz_server.process.pid)) == fuzz_server.worker_pid


def test_a_minimum_of_1e400_is_refused_not_dropped(fuzz_server):
    raw = ('{"model": "gemma3:270m", "prompt": "x", "stream": false, "options": {"num_predict": 2},'
           ' "format": {"type": "object", "properties": {"n": {"type": "number", "minimum": 1e400}}}}')
    response = requests.post(fuzz_server.url + "/api/generate", data=raw, timeout=60,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "format" in response.json()["error"]


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(schema=schemas, dialect=st.sampled_from(["openai", "ollama", "tgi"]))
def test_a_generated_schema_is_served_or_refused_never_a_crash(fuzz_server, schema, dialect):
    path, body = request_for(dialect, schema)
    response = requests.post(fuzz_server.url + path, json=body, timeout=120)
    COUNTS["tried"] += 1
    COUNTS[str(response.status_code)] += 1
    assert response.status_code in (200, 400, 422), (response.status_code, response.text[:300], schema)
    if response.status_code != 200:
        text = json.dumps(response.json())
        assert "error" in text


def test_the_worker_survived_every_schema(fuzz_server):
    assert COUNTS["tried"] >= 200
    assert requests.get(fuzz_server.url + "/health", timeout=10).status_code == 200
    assert max(children_of(fuzz_server.process.pid)) == fuzz_server.worker_pid, "the worker was restarted"
    peak = peak_rss_bytes(fuzz_server.worker_pid)
    print(f"\nschema fuzz: {COUNTS['tried']} schemas, {COUNTS['200']} served, "
          f"{COUNTS['400'] + COUNTS['422']} refused (400: {COUNTS['400']}, 422: {COUNTS['422']}), 0 crashes; "
          f"worker peak RSS {peak / 2**20:.0f} MiB")
