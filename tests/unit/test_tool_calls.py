"""The tool-call parsers per template family, on whole outputs and on outputs split one character at a time."""
from __future__ import annotations

import json

import pytest

from ollama_server.engine.tool_calls import ToolCallParser
from ollama_server.engine.tool_calls import parse
from ollama_server.engine.tool_calls import with_tool_calls
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall


def streamed(text: str, size: int = 1) -> list:
    """Events of `text` fed `size` characters at a time, then finished."""
    parser = ToolCallParser()
    events = []
    for start in range(0, len(text), size):
        events.extend(parser.feed(text[start:start + size]))
    return events + parser.finish()


def summary(events) -> tuple[str, list[tuple[str, dict]]]:
    text = "".join(e for e in events if isinstance(e, str))
    return text, [(e.name, json.loads(e.arguments)) for e in events if isinstance(e, ToolCall)]


FAMILIES = {
    "hermes": ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
               [("get_weather", {"city": "Paris"})]),
    "hermes_two": ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
                   '<tool_call>{"name": "b", "arguments": {"x": [1, 2]}}</tool_call>',
                   [("a", {}), ("b", {"x": [1, 2]})]),
    "llama_bare_json": ('{"name": "get_weather", "parameters": {"city": "Rome"}}', [("get_weather", {"city": "Rome"})]),
    "llama_python_tag": ('<|python_tag|>{"name": "a", "parameters": {"q": 1}}; {"name": "b", "parameters": {}}',
                         [("a", {"q": 1}), ("b", {})]),
    "mistral_array": ('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
                      [("get_weather", {"city": "Oslo"})]),
    "mistral_args": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Oslo"}', [("get_weather", {"city": "Oslo"})]),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_parses_to_calls_whole_and_split_one_character_at_a_time(family):
    text, calls = FAMILIES[family]
    assert summary(streamed(text, size=len(text))) == ("", calls)
    assert summary(streamed(text, size=1))[1] == calls
    assert summary(streamed(text, size=3))[1] == calls


def test_text_around_a_hermes_call_streams_as_content_and_the_call_is_held_until_complete():
    parser = ToolCallParser()
    assert parser.feed("Let me check. <tool") == ["Let me check. "]  # the marker's start is held back
    assert parser.feed('_call>{"name": "f", "argu') == []
    events = parser.feed('ments": {}}</tool_call> Done')
    assert isinstance(events[0], ToolCall) and events[0].name == "f" and events[0].arguments == "{}"
    assert events[1:] == [" Done"]
    assert parser.finish() == []


def test_a_call_gets_an_openai_style_id():
    _, calls = parse('<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 10


@pytest.mark.parametrize("malformed", [
    '<tool_call>{"name": "f", "arguments": {"a": 1}</tool_call>',  # broken JSON
    '<tool_call>{"arguments": {}}</tool_call>',                    # no name
    '<tool_call>{"name": "f", "arguments": [1]}</tool_call>',      # arguments not an object
    '<tool_call>{"name": "f", "arguments": {}',                    # cut off
    '[TOOL_CALLS] [{"name": "f", "arguments": ',
    '<|python_tag|>print(1)',
])
def test_a_malformed_call_comes_back_verbatim_as_text(malformed):
    assert summary(streamed(malformed, 1)) == (malformed, [])
    assert parse(malformed) == (malformed, [])


def test_a_hermes_call_missing_only_its_closing_tag_still_counts():
    text, calls = parse('<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n')
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("f", '{"a": 1}')]


def test_json_that_is_an_answer_and_not_a_call_is_returned_as_text():
    for answer in ('{"answer": 42}', '{hello}', '  {"city": "Paris"} and more'):
        assert parse(answer) == (answer, [])


def test_bare_json_counts_as_a_call_only_at_the_start_of_the_reply():
    text = 'Here: {"name": "f", "parameters": {}}'
    assert parse(text) == (text, [])


def test_stringified_arguments_that_hold_an_object_are_accepted():
    _, calls = parse('<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>')
    assert json.loads(calls[0].arguments) == {"a": 1}


def test_lookalike_text_is_streamed_once_it_cannot_be_a_marker():
    parser = ToolCallParser()
    assert parser.feed("a <b") == ["a <b"]  # `<b` starts no marker
    assert parser.feed(" <t") == [" "]  # `<t` might be `<tool_call>`
    assert parser.feed("d> c") == ["<td> c"]


def request(**fields) -> GenerateRequest:
    return GenerateRequest(model=None, messages=(Message("user", "hi"),), tools=(Tool("f"),), **fields)


def chunks_of(text: str) -> list[Chunk]:
    return [Chunk(text=c) for c in text] + [Chunk(finish_reason="stop")]


def test_chunks_carry_the_calls_and_the_last_chunk_what_was_held():
    out = list(with_tool_calls(chunks_of('ok <tool_call>{"name": "f", "arguments": {}}</tool_call> <tool'),
                               request()))
    assert "".join(c.text for c in out) == "ok  <tool"
    assert [c.name for chunk in out for c in chunk.tool_calls] == ["f"]
    assert out[-1].finish_reason == "stop" and out[-1].text == " <tool"


def test_without_parallel_tool_calls_only_the_first_call_is_kept():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "g", "arguments": {}}</tool_call>'
    out = list(with_tool_calls(chunks_of(text), request(parallel_tool_calls=False)))
    assert [c.name for chunk in out for c in chunk.tool_calls] == ["f"]


def test_tool_choice_none_leaves_the_output_untouched():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    out = list(with_tool_calls(chunks_of(text), request(tool_choice="none")))
    assert "".join(c.text for c in out) == text and not any(c.tool_calls for c in out)


def test_whitespace_between_and_after_calls_is_not_content_but_text_after_them_is():
    two = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n\n'
           '<tool_call>{"name": "b", "arguments": {}}</tool_call>\n')
    assert summary(streamed(two, 1)) == ("", [("a", {}), ("b", {})])
    assert summary(streamed('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n Done.', 1)) == (
        "\n Done.", [("a", {})])
