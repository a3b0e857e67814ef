"""What a constrained-output schema may cost: depth, repetition, finite numbers, local refs, known keywords."""
import json

import pytest

from ollama_server.engine.schema_limits import SchemaLimits
from ollama_server.engine.schema_limits import check_grammar_size
from ollama_server.engine.schema_limits import check_schema
from ollama_server.engine.types import InvalidRequestError

LIMITS = SchemaLimits(max_depth=4, max_repetition=100, max_grammar_bytes=2048)


def nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth - 1):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize("schema", [
    {},
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
     "required": ["name"], "additionalProperties": False, "title": "Person", "description": "who"},
    {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    {"$defs": {"p": {"type": "string"}}, "$ref": "#/$defs/p"},
    {"type": "string", "pattern": "^[a-z]{2,8}$"},
    {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
    {"enum": ["a", 1, 2.5, None]},
    nested(4),
])
def test_it_accepts_schemas_within_the_limits(schema):
    check_schema(schema, LIMITS)


@pytest.mark.parametrize("schema, words", [
    (nested(5), "max_schema_depth"),
    ({"type": "array", "minItems": 100, "maxItems": 100000, "items": {"type": "array"}}, "max_schema_repetition"),
    ({"type": "string", "minLength": 1000000000, "maxLength": 1000000000}, "max_schema_repetition"),
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 30} for i in range(4)}},
     "max_schema_repetition"),
    ({"type": "string", "pattern": "a{1000000}"}, "max_schema_repetition"),
    ({"type": "string", "pattern": "(ab){5,}c{0,99}"}, "max_schema_repetition"),
    ({"type": "number", "minimum": float("inf")}, "not finite"),
    ({"enum": [float("nan")]}, "not finite"),
    ({"type": "integer", "minimum": 5}, "'minimum'"),
    ({"type": "array", "uniqueItems": True}, "'uniqueItems'"),
    ({"not": {"type": "string"}}, "'not'"),
    ({"$ref": "https://evil.example/schema.json"}, "only local references"),
    ({"type": "array", "minItems": -1}, "non-negative integer"),
    ({"type": "array", "maxItems": 2.5}, "non-negative integer"),
    ({"type": "array", "maxItems": True}, "non-negative integer"),
    ({"type": "string", "minLength": 9, "maxLength": 3}, "greater than"),
    ({"type": "object", "properties": ["a"]}, "must be an object"),
    ({"anyOf": []}, "non-empty list"),
    ({"type": "object", "required": "name"}, "list of property names"),
    ({"type": "string", "pattern": 5}, "must be a string"),
    ([1, 2], "must be an object"),
])
def test_it_refuses_a_costly_or_unenforceable_schema_naming_why(schema, words):
    with pytest.raises(InvalidRequestError) as caught:
        check_schema(schema, LIMITS, field="format")
    assert words in caught.value.message
    assert caught.value.param == "format" and caught.value.message.startswith("format: ")


def test_it_names_the_path_of_the_offending_keyword():
    schema = {"type": "object", "properties": {"age": {"type": "integer", "maximum": 120}}}
    with pytest.raises(InvalidRequestError) as caught:
        check_schema(schema, LIMITS)
    assert "$.properties.age" in caught.value.message


def test_property_names_are_not_taken_for_keywords():
    check_schema({"type": "object", "properties": {"minimum": {"type": "number"}, "not": {"type": "string"}}}, LIMITS)


def test_a_deep_const_value_is_checked_without_recursion():
    value: list = []
    for _ in range(100000):
        value = [value]
    check_schema({"const": value}, LIMITS)  # no RecursionError: numbers are looked for with a stack


def test_it_refuses_a_grammar_over_max_grammar_bytes():
    check_grammar_size("x" * 2048, LIMITS)
    with pytest.raises(InvalidRequestError) as caught:
        check_grammar_size("x" * 2049, LIMITS)
    assert "max_grammar_bytes" in caught.value.message


def test_one_e_400_parsed_from_json_is_refused():
    schema = json.loads('{"type": "number", "const": 1e400}')
    with pytest.raises(InvalidRequestError, match="not finite"):
        check_schema(schema, LIMITS)
