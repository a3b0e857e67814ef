"""The GBNF grammar that forces a tool call (tool_choice required or named): Hermes `<tool_call>` blocks whose
JSON is built by llama.cpp's schema converter from the tools' argument schemas, so the call always parses."""
from __future__ import annotations

from typing import Callable
from typing import Sequence

from ollama_server.engine.schema_limits import SchemaLimits
from ollama_server.engine.schema_limits import check_schema
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import Tool

CALL_RULE = "tool-call-object"  # the converter's `root`, renamed: our root wraps it in the tags
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def call_schema(tool: Tool) -> dict:
    """The JSON schema of one call of `tool`: {"name": <its name>, "arguments": <its parameters>}."""
    parameters = tool.parameters if tool.parameters else {"type": "object"}
    return {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": tool.name}, "arguments": parameters}}


def chosen_tools(tools: Sequence[Tool], tool_name: str | None) -> list[Tool]:
    """The tools a forced call may use: the named one, or all; 400 naming tool_choice for an unknown name."""
    if tool_name is None:
        return list(tools)
    chosen = [tool for tool in tools if tool.name == tool_name]
    if not chosen:
        raise InvalidRequestError(f"tool_choice: no tool named {tool_name!r} in tools", param="tool_choice")
    return chosen


def rename_rule(grammar: str, old: str, new: str) -> str:
    """`grammar` with every reference to rule `old` (outside literals, classes and comments) renamed `new`."""
    out: list[str] = []
    i, n = 0, len(grammar)
    while i < n:
        ch = grammar[i]
        if ch in "\"[":  # a string literal or a character class: copied verbatim, escapes included
            close = '"' if ch == '"' else "]"
            j = i + 1
            while j < n and grammar[j] != close:
                j += 2 if grammar[j] == "\\" else 1
            out.append(grammar[i:j + 1])
            i = j + 1
        elif ch == "#":
            j = grammar.find("\n", i)
            j = n if j < 0 else j
            out.append(grammar[i:j])
            i = j
        elif ch in _NAME_CHARS:
            j = i
            while j < n and grammar[j] in _NAME_CHARS:
                j += 1
            word = grammar[i:j]
            out.append(new if word == old else word)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tool_call_grammar(tools: Sequence[Tool], tool_name: str | None, parallel: bool,
                      schema_grammar: Callable[[dict, str], str], limits: SchemaLimits) -> str:
    """GBNF for one (or, with `parallel`, one or more) `<tool_call>` blocks of the chosen tools."""
    if not tools:
        raise InvalidRequestError("tool_choice: a tool call is required but no tools were given", param="tools")
    schemas = [call_schema(tool) for tool in chosen_tools(tools, tool_name)]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    check_schema(schema, limits, "tools")
    body = rename_rule(schema_grammar(schema, "tools"), "root", CALL_RULE)
    block = f'"<tool_call>\\n" {CALL_RULE} "\\n</tool_call>"'
    root = f'root ::= {block} ("\\n" {block})*' if parallel else f"root ::= {block}"
    return f"{root}\n{body}\n"
