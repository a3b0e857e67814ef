"""Pure Ollama translation: bodies to engine requests, durations, options, and the response objects."""
from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from ollama_server.api.errors import ApiError
from ollama_server.api.ollama import model_details as md
from ollama_server.api.ollama import translate as tr
from ollama_server.api.ollama.schemas import FOREVER
from ollama_server.api.ollama.schemas import ChatBody
from ollama_server.api.ollama.schemas import GenerateBody
from ollama_server.api.ollama.schemas import parse_duration
from ollama_server.engine.types import Message
from ollama_server.engine.types import TokenLogprob
from ollama_server.engine.types import Usage

SHOW = tr.ThinkMode(split=True, show=True)
HIDE = tr.ThinkMode(split=True, show=False)


def gen(**fields) -> GenerateBody:
    return GenerateBody.model_validate_json(json.dumps(fields), strict=True)


def chat(**fields) -> ChatBody:
    return ChatBody.model_validate_json(json.dumps(fields), strict=True)


DURATIONS = [
    ("5m", 300.0), ("1h30m", 5400.0), ("10s", 10.0), ("0", 0.0), ("-1", -1.0), ("1.5h", 5400.0),
    ("500ms", 0.5), ("-1m", -60.0), ("+2s", 2.0), ("300", 300.0), ("2h45m30s", 9930.0), ("1us", 1e-6),
]


@pytest.mark.parametrize("text,seconds", DURATIONS, ids=[d[0] for d in DURATIONS])
def test_go_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["forever", "", "5x", "m", "1h 30m", "-", "5m3"])
def test_invalid_durations_are_rejected(text):
    with pytest.raises(ValueError):
        parse_duration(text)


KEEP_ALIVES = [
    ({}, 300.0), ({"keep_alive": 0}, 0.0), ({"keep_alive": "0"}, 0.0), ({"keep_alive": 90}, 90.0),
    ({"keep_alive": 2.5}, 2.5), ({"keep_alive": "10m"}, 600.0), ({"keep_alive": -1}, None),
    ({"keep_alive": "-1"}, None), ({"keep_alive": "-5m"}, None), ({"keep_alive": None}, 300.0),
]


@pytest.mark.parametrize("fields,seconds", KEEP_ALIVES, ids=[repr(k[0]) for k in KEEP_ALIVES])
def test_keep_alive_becomes_engine_seconds_with_negative_meaning_forever(fields, seconds):
    assert tr.keep_alive_seconds(gen(**fields).keep_alive) == seconds


def test_a_negative_keep_alive_is_parsed_as_forever():
    assert gen(keep_alive="-3h").keep_alive == FOREVER


@pytest.mark.parametrize("value", ["forever", True, [1], {"s": 1}])
def test_keep_alive_of_the_wrong_kind_is_a_validation_error(value):
    with pytest.raises(ValidationError):
        gen(keep_alive=value)


NUM_PREDICT = [(None, None), (-1, None), (-2, None), (0, None), (1, 1), (16, 16), (16.0, 16), (100000, 100000)]


@pytest.mark.parametrize("num_predict,max_tokens", NUM_PREDICT, ids=[repr(n[0]) for n in NUM_PREDICT])
def test_num_predict_maps_to_max_tokens(num_predict, max_tokens):
    options = {} if num_predict is None else {"num_predict": num_predict}
    request = tr.from_generate(gen(prompt="x", options=options), HIDE, "/api/generate")
    assert request.max_tokens == max_tokens
    assert request.cap_to_context is True


@pytest.mark.parametrize("num_predict", [-3, -5, -100, -2**40, -3.0])
def test_a_negative_num_predict_other_than_minus_one_or_two_is_a_validation_error(num_predict):
    """-1 and -2 have a meaning in Ollama; other negatives are refused, naming num_predict."""
    with pytest.raises(ValidationError, match="num_predict"):
        gen(prompt="x", options={"num_predict": num_predict})


def test_sampling_defaults_are_ollamas():
    sampling = tr.from_generate(gen(prompt="x"), HIDE, "/api/generate").sampling
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.min_p, sampling.repeat_penalty) == \
        (0.8, 40, 0.9, 0.0, 1.0)
    assert sampling.seed is None and sampling.json_schema is None


OPTIONS = [
    ("temperature", 0, "temperature", 0.0), ("temperature", 1.3, "temperature", 1.3), ("top_k", 5, "top_k", 5),
    ("top_p", 0.5, "top_p", 0.5), ("min_p", 0.1, "min_p", 0.1), ("repeat_penalty", 1.2, "repeat_penalty", 1.2),
    ("presence_penalty", 0.4, "presence_penalty", 0.4), ("frequency_penalty", 0.6, "frequency_penalty", 0.6),
    ("seed", 42, "seed", 42), ("seed", -1, "seed", None),
]


@pytest.mark.parametrize("key,value,field,expected", OPTIONS, ids=[f"{o[0]}={o[1]}" for o in OPTIONS])
def test_options_set_the_sampling(key, value, field, expected):
    sampling = tr.from_generate(gen(prompt="x", options={key: value}), HIDE, "/api/generate").sampling
    assert getattr(sampling, field) == expected


def test_request_options_beat_model_parameters_which_beat_ollama_defaults():
    parameters = {"temperature": 1.0, "top_k": 64, "stop": ["<end>"], "top_p": "bad"}
    plain = tr.from_generate(gen(prompt="x"), HIDE, "/g", parameters=parameters)
    assert (plain.sampling.temperature, plain.sampling.top_k, plain.sampling.top_p) == (1.0, 64, 0.9)
    assert plain.stop == ("<end>",)
    chosen = tr.from_generate(gen(prompt="x", options={"temperature": 0.1, "stop": ["!"]}), HIDE, "/g",
                              parameters=parameters)
    assert chosen.sampling.temperature == 0.1 and chosen.stop == ("!",)


def test_num_ctx_and_stop_pass_through_and_unknown_options_are_ignored():
    body = gen(prompt="x", options={"num_ctx": 512, "stop": ["a", ""], "mirostat": 2, "num_thread": 4})
    request = tr.from_generate(body, HIDE, "/api/generate")
    assert request.num_ctx == 512
    assert request.stop == ("a",)
    assert body.options.model_extra == {"mirostat": 2}


@pytest.mark.parametrize("fmt,schema", [("json", {}), ({"type": "object"}, {"type": "object"}), (None, None),
                                        ("", None)])
def test_format_becomes_a_json_schema(fmt, schema):
    assert tr.from_generate(gen(prompt="x", format=fmt), HIDE, "/g").sampling.json_schema == schema


@pytest.mark.parametrize("fmt", ["xml", 5, ["json"]])
def test_other_formats_are_rejected(fmt):
    with pytest.raises(ValidationError):
        gen(format=fmt)


def test_templated_generate_is_a_user_turn_after_an_optional_system_turn():
    assert tr.from_generate(gen(prompt="hi"), HIDE, "/g").messages == (Message("user", "hi"),)
    with_system = tr.from_generate(gen(prompt="hi", system="Be brief"), HIDE, "/g")
    assert with_system.messages == (Message("system", "Be brief"), Message("user", "hi"))
    assert with_system.prompt is None


def test_the_models_system_applies_unless_the_request_sets_one():
    assert tr.from_generate(gen(prompt="hi"), HIDE, "/g", system="Model").messages[0] == Message("system", "Model")
    assert tr.from_generate(gen(prompt="hi", system="Mine"), HIDE, "/g", system="Model").messages[0] == \
        Message("system", "Mine")


def test_raw_generate_is_the_prompt_untemplated():
    request = tr.from_generate(gen(prompt="<b>text", raw=True), HIDE, "/g")
    assert request.prompt == "<b>text" and request.messages is None


@pytest.mark.parametrize("extra", [{"system": "s"}, {"template": "t"}, {"context": [1, 2]}])
def test_raw_with_system_template_or_context_is_refused(extra):
    with pytest.raises(ApiError) as caught:
        tr.check_generate(gen(prompt="x", raw=True, **extra), "m")
    assert caught.value.message == "raw mode does not support template, system, or context"


# suffix (insert) is decided by the engine, which knows the loaded model's FIM tokens (test_infill.py)
@pytest.mark.parametrize("fields,capability", [({"images": ["aGk="]}, "vision")])
def test_generate_features_the_model_lacks_are_refused(fields, capability):
    with pytest.raises(ApiError) as caught:
        tr.check_generate(gen(prompt="x", **fields), "m:latest")
    assert caught.value.message == f'"m:latest" does not support {capability}'


def test_chat_messages_keep_their_roles_and_the_model_system_leads():
    body = chat(messages=[{"role": "User", "content": "hi"}, {"role": "assistant", "content": "yo"},
                          {"role": "user"}])
    request = tr.from_chat(body, HIDE, "/api/chat", system="Sys")
    assert request.messages == (Message("system", "Sys"), Message("user", "hi"), Message("assistant", "yo"),
                                Message("user", ""))
    own = chat(messages=[{"role": "system", "content": "Mine"}, {"role": "user", "content": "hi"}])
    assert tr.from_chat(own, HIDE, "/api/chat", system="Sys").messages[0] == Message("system", "Mine")


def test_chat_with_a_tool_that_is_not_a_function_is_refused():
    with pytest.raises(ApiError):
        tr.from_chat(chat(messages=[{"role": "user", "content": "x"}], tools=[{"type": "web_search"}]), HIDE,
                     "/api/chat")


THINK = [(None, False, tr.ThinkMode(True, False)), (None, True, tr.ThinkMode(False, False)),
         (False, False, tr.ThinkMode(True, False)), (False, True, tr.ThinkMode(False, False)),
         (True, False, tr.ThinkMode(True, True)), (True, True, tr.ThinkMode(True, True)),
         ("high", False, tr.ThinkMode(True, True))]


@pytest.mark.parametrize("think,preserve,mode", THINK, ids=[f"{t[0]}-{t[1]}" for t in THINK])
def test_think_and_preserve_think_tags_decide_splitting_and_showing(think, preserve, mode):
    assert tr.think_mode(think, preserve) == mode
    assert tr.from_generate(gen(prompt="x", think=think), mode, "/g").split_thinking is mode.split


def test_the_engine_request_is_tagged_as_ollama():
    request = tr.from_chat(chat(model="tiny", messages=[{"role": "user", "content": "x"}], logprobs=True,
                                top_logprobs=3), SHOW, "/api/chat")
    assert (request.model, request.dialect, request.endpoint, request.logprobs) == ("tiny", "ollama", "/api/chat", 3)
    assert tr.from_generate(gen(model="", prompt="x"), SHOW, "/g").model is None


def test_metrics_are_integer_nanoseconds():
    usage = Usage(prompt_tokens=7, completion_tokens=3, load_s=0.25, prompt_eval_s=0.001, eval_s=1.5, total_s=2.0)
    assert tr.metrics(usage) == {"total_duration": 2_000_000_000, "load_duration": 250_000_000,
                                 "prompt_eval_count": 7, "prompt_eval_duration": 1_000_000, "eval_count": 3,
                                 "eval_duration": 1_500_000_000}


@pytest.mark.parametrize("finish,reason", [("stop", "stop"), ("length", "length"), ("cancelled", "cancelled"),
                                           (None, "stop")])
def test_done_reason_says_cancelled_for_a_dismissed_request(finish, reason):
    """A dismissed request is reported as cancelled, not as a natural stop."""
    assert tr.done_reason(finish) == reason


def test_pieces_and_finals_have_ollamas_shapes():
    generate = tr.piece("generate", "m", "tok")
    assert list(generate) == ["model", "created_at", "response", "done"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", generate["created_at"])
    message = tr.piece("chat", "m", "", thinking="hmm")["message"]
    assert message == {"role": "assistant", "content": "", "thinking": "hmm"}
    done = tr.final("chat", "m", "length", Usage(completion_tokens=2))
    assert done["done"] is True and done["done_reason"] == "length" and done["eval_count"] == 2
    assert "total_duration" not in tr.final("generate", "m", "load", None)


def test_logprobs_become_token_logprob_lists():
    lp = TokenLogprob(token=65, text="A", logprob=-0.5, top=((65, "A", -0.5), (66, "B", -1.0)))
    assert tr.piece("generate", "m", "A", logprobs=[lp])["logprobs"] == [
        {"token": "A", "logprob": -0.5, "top_logprobs": [{"token": "A", "logprob": -0.5},
                                                         {"token": "B", "logprob": -1.0}]}]


@pytest.mark.parametrize("count,text", [(268_098_176, "268.10M"), (3_212_749_888, "3.2B"), (8_000_000_000, "8B"),
                                        (7_000_000, "7M"), (1500, "2K"), (12, "12")])
def test_parameter_counts_read_like_ollamas(count, text):
    assert md.human_number(count) == text


def test_expiry_forever_is_far_in_the_future():
    assert md.expires_rfc3339(None).startswith("23")
    assert md.expires_rfc3339(0.0) == "1970-01-01T00:00:00.000000Z"
