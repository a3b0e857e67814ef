"""The grammar checker process: llama.cpp builds each grammar there first, so a crash costs only that process."""
import pytest

from ollama_server.engine.grammar_checker import GrammarChecker
from ollama_server.engine.llama_backend import LlamaBackend
from ollama_server.engine.types import InvalidRequestError

# The schema from the probe that killed the server: its grammar overflows llama.cpp's parser stack.
CRASHING = {"type": "array", "minItems": 100, "maxItems": 100000,
            "items": {"type": "array", "minItems": 100, "maxItems": 1000}}


@pytest.fixture(scope="module")
def backend():
    backend = LlamaBackend()
    yield backend
    backend.close()


def test_it_accepts_a_grammar_llama_cpp_builds(backend):
    grammar = backend.json_schema_grammar({"type": "object", "properties": {"a": {"type": "string"}}}, "format")
    assert backend.grammar_checker.check(grammar) is None


def test_it_reports_why_a_grammar_does_not_parse(backend):
    problem = backend.grammar_checker.check('root ::= "a" (')
    assert problem and "pars" in problem


def test_a_grammar_that_crashes_llama_cpp_kills_only_the_checker(backend):
    grammar = backend.json_schema_grammar(CRASHING, "response_format")
    with pytest.raises(InvalidRequestError) as caught:
        backend.check_grammar(grammar, "response_format")
    assert caught.value.param == "response_format"
    assert "SIGSEGV" in caught.value.message
    # and the next grammar is checked by a fresh child
    assert backend.grammar_checker.check('root ::= "yes" | "no"') is None


def test_a_grammar_that_takes_too_long_is_stopped():
    checker = GrammarChecker(timeout_s=0.0)
    try:
        problem = checker.check('root ::= "a"')
        assert problem and "longer than" in problem
    finally:
        checker.close()


def test_the_converter_refusing_a_schema_is_a_400_naming_the_field(backend):
    with pytest.raises(InvalidRequestError) as caught:
        backend.json_schema_grammar({"type": "no-such-type"}, "grammar")
    assert caught.value.param == "grammar" and caught.value.message.startswith("grammar: ")


def test_an_empty_schema_is_any_json(backend):
    grammar = backend.json_schema_grammar({}, "format")
    assert "root" in grammar and backend.grammar_checker.check(grammar) is None
