"""Constrained output on every route that asks for it: each field reaches the sampler as a grammar, and anything
we cannot honour is a 400 (422 for TGI) in the caller's dialect naming the field, never dropped."""
import json

import pytest

from ollama_server.engine.regex_grammar import choice_to_gbnf
from ollama_server.engine.regex_grammar import regex_to_gbnf
from tests.fakes.backend import FakeBackend

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
SCHEMA_GRAMMAR = FakeBackend().json_schema_grammar(SCHEMA, "x")
ANY_JSON = FakeBackend().json_schema_grammar({}, "x")
GBNF = 'root ::= "ok" | "no"'

# (extra body fields, the grammar the sampler must get)
FIELDS = [
    ({"guided_choice": ["yes", "no"]}, choice_to_gbnf(["yes", "no"])),
    ({"guided_regex": r"\d{3}"}, regex_to_gbnf(r"\d{3}")),
    ({"guided_json": SCHEMA}, SCHEMA_GRAMMAR),
    ({"guided_json": json.dumps(SCHEMA)}, SCHEMA_GRAMMAR),
    ({"guided_grammar": GBNF}, GBNF),
    ({"guided_regex": "a+", "guided_decoding_backend": "xgrammar"}, regex_to_gbnf("a+")),
    ({"structured_outputs": {"json": SCHEMA}}, SCHEMA_GRAMMAR),
    ({"structured_outputs": {"regex": "[ab]+"}}, regex_to_gbnf("[ab]+")),
    ({"structured_outputs": {"choice": ["x", "y"]}}, choice_to_gbnf(["x", "y"])),
    ({"structured_outputs": {"grammar": GBNF}}, GBNF),
    ({"structured_outputs": {"json_object": True}}, ANY_JSON),
    ({"grammar": GBNF}, GBNF),
    ({"json_schema": SCHEMA}, SCHEMA_GRAMMAR),
    ({"response_format": {"type": "json_object"}}, ANY_JSON),
    ({"response_format": {"type": "json_object", "schema": SCHEMA}}, SCHEMA_GRAMMAR),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}}, SCHEMA_GRAMMAR),
]
ROUTES = {"/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
          "/v1/completions": {"prompt": "hi"}}

# (extra body fields, the field the 400 must name, words the message must contain)
REFUSED = [
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", "guided_regex and guided_choice"),
    ({"guided_json": SCHEMA, "response_format": {"type": "json_object"}}, "response_format", "one output constraint"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs.choice", "one output constraint"),
    ({"guided_regex": "(?=a)a"}, "guided_regex", "lookahead"),
    ({"structured_outputs": {"regex": "(a)\\1"}}, "structured_outputs.regex", "backreference"),
    ({"guided_regex": "a{5000}"}, "guided_regex", "max_schema_repetition"),
    ({"guided_json": "{not json"}, "guided_json", "not valid JSON"),
    ({"guided_json": "[1]"}, "guided_json", "JSON schema object"),
    ({"guided_json": {"type": "string", "contentEncoding": "base64"}}, "guided_json", "contentEncoding"),
    ({"guided_choice": []}, "guided_choice", ""),
    ({"guided_whitespace_pattern": " *"}, "guided_whitespace_pattern", "not supported"),
    ({"structural_tag": {"type": "structural_tag"}}, "structural_tag", "not supported"),
    ({"structured_outputs": {"structural_tag": "x"}}, "structured_outputs.structural_tag", "not supported"),
    ({"response_format": {"type": "json_object", "schema": "x"}}, "response_format", "schema"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("fields,grammar", FIELDS, ids=[json.dumps(f)[:60] for f, _ in FIELDS])
def test_each_constraint_field_reaches_the_sampler_as_its_grammar(client, fake_backend, route, fields, grammar):
    fake_backend.enqueue("123")
    response = client.post(route, json={**ROUTES[route], **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert fake_backend.grammars == [grammar]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("fields,param,words", REFUSED, ids=[json.dumps(f)[:60] for f, _, _ in REFUSED])
def test_a_constraint_we_cannot_honour_is_an_openai_400_naming_the_field(client, fake_backend, route, fields,
                                                                         param, words):
    response = client.post(route, json={**ROUTES[route], **fields})
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    assert fake_backend.grammars == []  # nothing was generated


def test_every_choice_of_n_gets_the_constraint(client, fake_backend):
    for reply in ("yes", "no"):
        fake_backend.enqueue(reply)
    response = client.post("/v1/chat/completions", json={**ROUTES["/v1/chat/completions"], "n": 2,
                                                          "guided_choice": ["yes", "no"]})
    assert response.status_code == 200
    assert fake_backend.grammars == [choice_to_gbnf(["yes", "no"])] * 2


def test_a_streamed_chat_is_constrained_too(client, fake_backend):
    fake_backend.enqueue("42")
    response = client.post("/v1/chat/completions", json={**ROUTES["/v1/chat/completions"], "stream": True,
                                                          "guided_regex": "[0-9]+"})
    assert response.status_code == 200 and "[DONE]" in response.get_data(as_text=True)
    assert fake_backend.grammars == [regex_to_gbnf("[0-9]+")]


def test_tgi_regex_grammar_reaches_the_sampler(client, fake_backend):
    fake_backend.enqueue("ab")
    response = client.post("/generate", json={"inputs": "x", "parameters": {"grammar": {"type": "regex",
                                                                                        "value": "[ab]+"}}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert fake_backend.grammars == [regex_to_gbnf("[ab]+")]


def test_tgi_json_grammar_still_reaches_the_sampler(client, fake_backend):
    fake_backend.enqueue("{}")
    response = client.post("/generate", json={"inputs": "x", "parameters": {"grammar": {"type": "json",
                                                                                        "value": SCHEMA}}})
    assert response.status_code == 200
    assert fake_backend.grammars == [SCHEMA_GRAMMAR]


@pytest.mark.parametrize("grammar,words", [({"type": "regex", "value": "(?<=a)b"}, "lookbehind"),
                                           ({"type": "regex", "value": ["a"]}, "regular expression string"),
                                           ({"type": "lark", "value": "a"}, "'lark' is not supported")])
def test_a_tgi_grammar_we_cannot_honour_is_a_422_validation_error(client, fake_backend, grammar, words):
    response = client.post("/generate", json={"inputs": "x", "parameters": {"grammar": grammar}})
    assert response.status_code == 422
    body = response.get_json()
    assert body["error_type"] == "validation" and words in body["error"] and "grammar" in body["error"]
    assert fake_backend.grammars == []
