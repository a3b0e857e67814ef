"""Tools into the prompt (a tools-aware Jinja template, or a system message), the forcing grammar, the capability."""
from __future__ import annotations

import json

from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.chat_format import template_takes_tools
from ollama_server.engine.schema_limits import SchemaLimits
from ollama_server.engine.tool_grammar import rename_rule
from ollama_server.engine.tool_grammar import tool_call_grammar
from ollama_server.engine.types import Message
from ollama_server.engine.types import Tool
from ollama_server.engine.types import ToolCall
from ollama_server.models.inspect import template_capabilities

TOOLS_TEMPLATE = (
    "{% if tools %}TOOLS={{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
    "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}"
    "{% if m.tool_call_id %}(for {{ m.tool_call_id }}){% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)
WEATHER = Tool("get_weather", "weather", {"type": "object", "properties": {"city": {"type": "string"}}})


def test_a_tools_aware_template_gets_tools_and_structured_history():
    messages = (Message("user", "hi"), Message("assistant", "", (ToolCall("get_weather", '{"city": "Rome"}', "c1"),)),
                Message("tool", "sunny", tool_call_id="c1"))
    prompt = render_chat(messages, template=TOOLS_TEMPLATE, architecture="qwen2", tools=(WEATHER,))
    tools = json.loads(prompt.splitlines()[0][len("TOOLS="):])
    assert tools == [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                                       "parameters": WEATHER.parameters}}]
    assert 'CALL get_weather {"city": "Rome"}' in prompt and "[tool]sunny(for c1)" in prompt
    assert "<tool_call>" not in prompt  # the template's own format, not ours


def test_gemma_turns_get_the_tools_in_the_first_user_turn_and_results_as_user_turns():
    messages = (Message("system", "Be brief."), Message("user", "hi"), Message("tool", "sunny"))
    prompt = render_chat(messages, template=None, architecture="gemma3", tools=(WEATHER,))
    first = prompt.split("<end_of_turn>")[0]
    assert first.startswith("<start_of_turn>user\nBe brief.\n\nYou may call functions")
    assert '"name": "get_weather"' in first and "<tool_call>" in first
    assert "<start_of_turn>user\n<tool_response>\nsunny\n</tool_response><end_of_turn>" in prompt


def test_template_takes_tools_only_when_it_reads_the_tools_variable():
    assert template_takes_tools(TOOLS_TEMPLATE)
    assert not template_takes_tools("{{ messages }} toolset")
    assert not template_takes_tools(None)


def test_the_tools_capability_comes_from_the_template_word():
    assert "tools" in template_capabilities("{% if tools %}{{ tools }}{% endif %}")
    assert "tools" in template_capabilities("{{ if .Tools }}{{ .Tools }}{{ end }}")
    assert "tools" not in template_capabilities("{{ messages }} toolset")


def test_rename_rule_leaves_literals_and_classes_alone():
    grammar = 'root ::= "root" [root] x-root root\nx-root ::= "a" # root\n'
    assert rename_rule(grammar, "root", "call") == 'call ::= "root" [root] x-root call\nx-root ::= "a" # root\n'


def test_the_forcing_grammar_builds_with_llama_cpp_and_names_each_tool():
    from ollama_server.engine.llama_backend import LlamaBackend  # the real converter and checker
    backend = LlamaBackend()
    try:
        grammar = tool_call_grammar((WEATHER, Tool("noop")), None, True, backend.json_schema_grammar, SchemaLimits())
        backend.check_grammar(grammar, "tools")
    finally:
        backend.close()
    assert grammar.count("root ::=") == 1 and '"\\"get_weather\\""' in grammar and '"\\"noop\\""' in grammar
