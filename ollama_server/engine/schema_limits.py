"""Bounds on what a JSON schema for constrained output may cost, checked before any grammar is built.

llama.cpp turns a schema into a GBNF grammar whose size grows with every finite repetition count
(`maxItems: 100000` becomes 100,000 nested optional groups, which overflows the C parser's stack;
`minLength: 1e9` asks for a billion copies of a rule). So the schema is walked first: nesting depth,
the sum of repetition counts, finite numbers, local references only, and only the keywords the
grammar can enforce (a keyword it would silently drop changes the answer, so it is refused).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ollama_server.engine.types import InvalidRequestError

# Keywords the schema-to-grammar converter enforces.
ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "$defs", "definitions",
})
# Keywords that describe a schema without constraining its instances.
ANNOTATIONS = frozenset({
    "title", "description", "$schema", "$id", "$comment", "$anchor", "examples", "default", "deprecated",
    "readOnly", "writeOnly",
})
REPETITION_PAIRS = (("minItems", "maxItems"), ("minLength", "maxLength"))
SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SUBSCHEMA_ONE = ("additionalProperties",)
# {m}, {m,} and {m,n} quantifiers in a regular expression (each expands like minItems/maxItems).
_QUANTIFIER = re.compile(r"(?<!\\)\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


@dataclass(frozen=True)
class SchemaLimits:
    """How deep, how repetitive and how large (as GBNF) a constrained-output schema may be."""

    max_depth: int = 16
    max_repetition: int = 1000
    max_grammar_bytes: int = 262144


class _Walk:
    """One pass over a schema, adding up its repetition counts."""

    def __init__(self, limits: SchemaLimits, field: str):
        self.limits = limits
        self.field = field
        self.repetition = 0

    def fail(self, message: str) -> InvalidRequestError:
        return InvalidRequestError(f"{self.field}: {message}", param=self.field)

    def schema(self, node: Any, path: str, depth: int) -> None:
        if isinstance(node, bool):  # true / false are valid schemas (anything / nothing)
            return
        if not isinstance(node, dict):
            raise self.fail(f"the schema at {path} must be an object, got {type(node).__name__}")
        if depth > self.limits.max_depth:
            raise self.fail(f"the schema nests deeper than {self.limits.max_depth} levels at {path} "
                            f"(setting max_schema_depth)")
        for key in node:
            if key not in ENFORCED and key not in ANNOTATIONS:
                raise self.fail(f"JSON schema keyword '{key}' (at {path}) cannot be enforced by constrained "
                                f"decoding; remove it or validate the output yourself")
        self.repetitions(node, path)
        self.reference(node, path)
        self.pattern(node, path)
        for key in SUBSCHEMA_MAPS:
            children = node.get(key)
            if children is None:
                continue
            if not isinstance(children, dict):
                raise self.fail(f"'{key}' at {path} must be an object")
            for name, child in children.items():
                self.schema(child, f"{path}.{key}.{name}", depth + 1)
        for key in SUBSCHEMA_LISTS:
            children = node.get(key)
            if children is None:
                continue
            if not isinstance(children, list) or not children:
                raise self.fail(f"'{key}' at {path} must be a non-empty list of schemas")
            for index, child in enumerate(children):
                self.schema(child, f"{path}.{key}[{index}]", depth + 1)
        for key in SUBSCHEMA_ONE:
            if key in node:
                self.schema(node[key], f"{path}.{key}", depth + 1)
        items = node.get("items")
        if isinstance(items, list):  # the older tuple form, like prefixItems
            for index, child in enumerate(items):
                self.schema(child, f"{path}.items[{index}]", depth + 1)
        elif items is not None:
            self.schema(items, f"{path}.items", depth + 1)
        required = node.get("required")
        if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
            raise self.fail(f"'required' at {path} must be a list of property names")
        if "enum" in node and not isinstance(node["enum"], list):
            raise self.fail(f"'enum' at {path} must be a list")

    def finite(self, schema: Any) -> None:
        """Every number anywhere in the schema (const, enum, defaults...) must be finite: JSON has no
        Infinity, and a parser turns 1e400 into one."""
        stack = [(schema, "$")]
        while stack:
            item, path = stack.pop()
            if isinstance(item, float) and not math.isfinite(item):
                raise self.fail(f"the number at {path} is not finite ({item}); JSON numbers must be finite")
            if isinstance(item, dict):
                stack.extend((value, f"{path}.{key}") for key, value in item.items())
            elif isinstance(item, list):
                stack.extend((value, f"{path}[{index}]") for index, value in enumerate(item))

    def add(self, count: int, path: str) -> None:
        self.repetition += count
        if self.repetition > self.limits.max_repetition:
            raise self.fail(f"the schema's repetition counts add up to more than {self.limits.max_repetition} "
                            f"(at {path}; setting max_schema_repetition)")

    def repetitions(self, node: dict, path: str) -> None:
        for low_key, high_key in REPETITION_PAIRS:
            low, high = node.get(low_key, 0), node.get(high_key)
            for key, value in ((low_key, low), (high_key, high)):
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                    raise self.fail(f"'{key}' at {path} must be a non-negative integer, got {value!r}")
            if high is not None and low > high:
                raise self.fail(f"'{low_key}' ({low}) is greater than '{high_key}' ({high}) at {path}")
            # The grammar spells out max copies (or min copies and a star when there is no max).
            self.add(high if high is not None else low, path)

    def reference(self, node: dict, path: str) -> None:
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#/")):
            raise self.fail(f"only local references ('#/...') are allowed, got $ref {ref!r} at {path}")

    def pattern(self, node: dict, path: str) -> None:
        pattern = node.get("pattern")
        if pattern is None:
            return
        if not isinstance(pattern, str):
            raise self.fail(f"'pattern' at {path} must be a string")
        for low, high in _QUANTIFIER.findall(pattern):
            counts = [int(n) for n in (low, high) if n]
            self.add(max(counts, default=0), f"{path}.pattern")


def check_schema(schema: Any, limits: SchemaLimits, field: str = "response_format") -> None:
    """Raise InvalidRequestError naming `field` and the limit when `schema` may not become a grammar."""
    walk = _Walk(limits, field)
    walk.finite(schema)
    walk.schema(schema, "$", 1)


def check_grammar_size(grammar: str, limits: SchemaLimits, field: str = "response_format") -> None:
    """Raise InvalidRequestError when the compiled grammar is larger than max_grammar_bytes."""
    size = len(grammar.encode("utf-8"))
    if size > limits.max_grammar_bytes:
        raise InvalidRequestError(f"{field}: the schema compiles to a {size}-byte grammar, more than "
                                  f"{limits.max_grammar_bytes} (setting max_grammar_bytes)", param=field)
