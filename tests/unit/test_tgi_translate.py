"""Pure TGI translation: validation rules, sampling, engine requests, stream events, responses, errors."""
from __future__ import annotations

import pytest

from ollama_server.api.errors import ApiError
from ollama_server.api.tgi import translate as tr
from ollama_server.api.tgi.schemas import GenerateBody
from ollama_server.api.tgi.schemas import Parameters
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateResult
from ollama_server.engine.types import TokenLogprob
from ollama_server.engine.types import Usage


def body(inputs: str = "Hello", **parameters) -> GenerateBody:
    return GenerateBody(inputs=inputs, parameters=Parameters(**parameters))


INVALID = [
    ("empty inputs", "", {}, False, "`inputs` cannot be empty"),
    ("temperature zero", "x", {"temperature": 0.0}, False, "`temperature` must be strictly positive"),
    ("temperature negative", "x", {"temperature": -1.0}, False, "`temperature` must be strictly positive"),
    ("top_p one", "x", {"top_p": 1.0}, False, "`top_p` must be > 0.0 and < 1.0"),
    ("top_p zero", "x", {"top_p": 0.0}, False, "`top_p` must be > 0.0 and < 1.0"),
    ("typical_p one", "x", {"typical_p": 1.0}, False, "`typical_p` must be > 0.0 and < 1.0"),
    ("top_k zero", "x", {"top_k": 0}, False, "`top_k` must be strictly positive"),
    ("repetition_penalty zero", "x", {"repetition_penalty": 0.0}, False,
     "`repetition_penalty` must be strictly positive"),
    ("frequency_penalty high", "x", {"frequency_penalty": 2.5}, False, "`frequency_penalty` must be >= -2.0"),
    ("frequency_penalty low", "x", {"frequency_penalty": -2.5}, False, "`frequency_penalty` must be >= -2.0"),
    ("max_new_tokens zero", "x", {"max_new_tokens": 0}, False, "`max_new_tokens` must be strictly positive"),
    ("max_new_tokens negative", "x", {"max_new_tokens": -3}, False, "`max_new_tokens` must be strictly positive"),
    ("five stops", "x", {"stop": ["a", "b", "c", "d", "e"]}, False, "up to 4 stop sequences. Given: 5"),
    ("best_of two", "x", {"best_of": 2}, False, "`best_of` must be > 0 and <= 1. Given: 2"),
    ("best_of zero", "x", {"best_of": 0}, False, "`best_of` must be > 0 and <= 1. Given: 0"),
    ("watermark", "x", {"watermark": True}, False, "`watermark` is not supported"),
    ("truncate zero", "x", {"truncate": 0}, False, "`truncate` must be strictly positive"),
    ("top_n_tokens too many", "x", {"top_n_tokens": 6}, False, "`top_n_tokens` must be >= 0 and <= 5"),
    ("adapter", "x", {"adapter_id": "lora"}, False, "`adapter_id`"),
    ("decoder details when streaming", "x", {"decoder_input_details": True}, True, "`decoder_input_details`"),
]


@pytest.mark.parametrize("name,inputs,parameters,stream,message", INVALID, ids=[c[0] for c in INVALID])
def test_tgi_value_rules_reject_with_tgi_wording(name, inputs, parameters, stream, message):
    with pytest.raises(ApiError) as caught:
        tr.validate(body(inputs, **parameters), stream)
    assert caught.value.kind == "invalid_request"
    assert message in caught.value.message


VALID = [
    {}, {"temperature": 0.01}, {"top_p": 0.99}, {"top_k": 1}, {"typical_p": 0.5}, {"frequency_penalty": -2.0},
    {"frequency_penalty": 2.0}, {"stop": ["a", "b", "c", "d"]}, {"best_of": 1}, {"watermark": False},
    {"decoder_input_details": True}, {"top_n_tokens": 0}, {"top_n_tokens": 5}, {"truncate": 3},
]


@pytest.mark.parametrize("parameters", VALID)
def test_values_inside_tgi_limits_pass(parameters):
    tr.validate(body(**parameters), stream=False)


SAMPLING = [
    ({}, dict(temperature=0.0)),
    ({"repetition_penalty": 1.3, "frequency_penalty": 0.5}, dict(temperature=0.0, repeat_penalty=1.3,
                                                                  frequency_penalty=0.5)),
    ({"do_sample": True}, dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)),
    ({"do_sample": False, "temperature": 0.7}, dict(temperature=0.7, top_k=0, top_p=1.0)),
    ({"top_k": 5}, dict(temperature=1.0, top_k=5)),
    ({"top_p": 0.9}, dict(temperature=1.0, top_p=0.9)),
    ({"typical_p": 0.9}, dict(temperature=1.0)),
    ({"seed": 7}, dict(seed=7, temperature=0.0)),
    ({"seed": 2**40 + 5}, dict(seed=5)),
    ({"grammar": {"type": "json", "value": {"type": "object"}}}, dict(json_schema={"type": "object"})),
    ({"grammar": {"type": "json", "value": None}}, dict(json_schema={})),
    ({"grammar": {"type": "json", "value": '{"type": "array"}'}}, dict(json_schema={"type": "array"})),
    ({"grammar": {"type": "json_schema", "value": {"name": "x", "schema": {"type": "string"}}}},
     dict(json_schema={"type": "string"})),
]


@pytest.mark.parametrize("parameters,expected", SAMPLING)
def test_sampling_is_greedy_unless_a_sampling_knob_is_set(parameters, expected):
    sampling = tr.sampling_from(Parameters(**parameters))
    for key, value in expected.items():
        assert getattr(sampling, key) == value, key


@pytest.mark.parametrize("grammar", [{"type": "regex", "value": 5}, {"type": "lark", "value": "a"},
                                     {"type": "json", "value": "{not json"},
                                     {"type": "json", "value": [1, 2]}])
def test_unsupported_grammars_are_validation_errors(grammar):
    with pytest.raises(ApiError) as caught:
        tr.sampling_from(Parameters(grammar=grammar))
    assert caught.value.kind == "invalid_request"


REQUESTS = [
    ({}, False, dict(max_tokens=100, cap_to_context=True, logprobs=None, model=None)),
    ({"max_new_tokens": 5}, False, dict(max_tokens=5, cap_to_context=False)),
    ({"details": True}, False, dict(logprobs=0)),
    ({}, True, dict(logprobs=0)),
    ({"details": True, "top_n_tokens": 3}, True, dict(logprobs=3)),
    ({"stop": ["\n", ""]}, False, dict(stop=("\n",), include_stop_str=True)),
    ({"model": "tiny"}, False, dict(model="tiny")),
]


@pytest.mark.parametrize("parameters,stream,expected", REQUESTS)
def test_engine_requests_carry_tgi_defaults(parameters, stream, expected):
    request = tr.to_engine_request(body(**parameters), "/generate", stream)
    assert request.prompt == "Hello" and request.dialect == "tgi"
    for key, value in expected.items():
        assert getattr(request, key) == value, key


def test_top_level_model_and_truncated_tokens_reach_the_engine():
    request = tr.to_engine_request(GenerateBody(inputs="Hello", model="big"), "/", False, prompt_tokens=(1, 2))
    assert request.model == "big"
    assert request.prompt is None and request.prompt_tokens == (1, 2)


@pytest.mark.parametrize("stop_kind,reason", [("eos", "eos_token"), ("stop_sequence", "stop_sequence"),
                                              ("length", "length"), ("cancelled", "cancelled"), (None, "length")])
def test_finish_reasons_use_tgi_names(stop_kind, reason):
    assert tr.finish_reason(stop_kind) == reason


def token_chunk(char: str, text: str | None = None, top: tuple = ()) -> Chunk:
    entry = TokenLogprob(token=ord(char), text=char, logprob=-0.5, top=top)
    return Chunk(text=char if text is None else text, token_ids=(ord(char),), logprobs=(entry,))


def final_chunk(stop_kind: str = "eos", tail: str = "", completion: int = 2) -> Chunk:
    return Chunk(text=tail, finish_reason="stop", stop_kind=stop_kind, seed=99,
                 usage=Usage(prompt_tokens=4, completion_tokens=completion))


def test_stream_has_one_event_per_token_and_only_the_last_has_the_text():
    events = list(tr.stream_payloads([token_chunk("h"), token_chunk("i"), final_chunk()], tr.StreamPlan()))
    assert [e["index"] for e in events] == [1, 2]
    assert [e["token"] for e in events] == [{"id": 104, "text": "h", "logprob": -0.5, "special": False},
                                            {"id": 105, "text": "i", "logprob": -0.5, "special": False}]
    assert [e["generated_text"] for e in events] == [None, "hi"]
    assert all(e["details"] is None and "top_tokens" not in e for e in events)


def test_stream_details_and_full_text_on_the_last_event():
    plan = tr.StreamPlan(prefix="Say: ", details=True, parameters=Parameters(do_sample=True))
    events = list(tr.stream_payloads([token_chunk("h"), token_chunk("i"), final_chunk("length")], plan))
    assert events[-1]["generated_text"] == "Say: hi"
    assert events[-1]["details"] == {"finish_reason": "length", "generated_tokens": 2, "seed": 99,
                                     "input_length": 4}
    assert events[0]["details"] is None


def test_stream_token_text_is_the_tokens_own_even_when_held_back():
    chunks = [token_chunk("a", text=""), token_chunk("b", text=""), final_chunk(tail="ab")]
    events = list(tr.stream_payloads(chunks, tr.StreamPlan()))
    assert [e["token"]["text"] for e in events] == ["a", "b"]
    assert events[-1]["generated_text"] == "ab"


def test_stream_with_nothing_generated_sends_the_eos_token():
    plan = tr.StreamPlan(details=True, eos_token=lambda: (1, "<eos>"))
    events = list(tr.stream_payloads([final_chunk(completion=0)], plan))
    assert len(events) == 1
    assert events[0]["index"] == 1 and events[0]["token"] == {"id": 1, "text": "<eos>", "logprob": 0.0,
                                                              "special": True}
    assert events[0]["generated_text"] == "" and events[0]["details"]["finish_reason"] == "eos_token"


def test_stream_top_tokens_only_when_asked():
    chunk = token_chunk("a", top=((97, "a", -0.1), (98, "b", -2.0)))
    events = list(tr.stream_payloads([chunk, final_chunk()], tr.StreamPlan(top_n=2)))
    assert events[0]["top_tokens"] == [{"id": 97, "text": "a", "logprob": -0.1, "special": False},
                                       {"id": 98, "text": "b", "logprob": -2.0, "special": False}]


def test_a_failure_mid_stream_flushes_the_pending_token_then_sends_the_error():
    def chunks():
        yield token_chunk("a")
        raise EngineError("backend exploded")
    events = list(tr.stream_payloads(chunks(), tr.StreamPlan()))
    assert events[0]["index"] == 1 and events[0]["generated_text"] is None
    assert events[1] == {"error": "backend exploded", "error_type": "generation"}


def result(**overrides) -> GenerateResult:
    fields = dict(model="tiny", text="hi", token_ids=(104, 105), finish_reason="stop", stop_kind="eos",
                  usage=Usage(prompt_tokens=3, completion_tokens=2), seed=5,
                  logprobs=(TokenLogprob(104, "h", -0.1, ((104, "h", -0.1),)), TokenLogprob(105, "i", -0.2)))
    fields.update(overrides)
    return GenerateResult(**fields)


def test_generate_response_is_just_the_text_without_details():
    assert tr.generate_response(result(), Parameters(), "") == {"generated_text": "hi"}
    assert tr.generate_response(result(), Parameters(return_full_text=True), "Say ") == {"generated_text": "Say hi"}


def test_generate_response_details_list_tokens_and_greedy_has_no_seed():
    details = tr.generate_response(result(), Parameters(details=True), "")["details"]
    assert details["finish_reason"] == "eos_token" and details["generated_tokens"] == 2
    assert details["seed"] is None and details["prefill"] == []
    assert details["tokens"] == [{"id": 104, "text": "h", "logprob": -0.1, "special": False},
                                 {"id": 105, "text": "i", "logprob": -0.2, "special": False}]
    assert "top_tokens" not in details


def test_generate_response_top_tokens_and_sampled_seed():
    details = tr.generate_response(result(), Parameters(details=True, top_n_tokens=1, temperature=0.5), "")["details"]
    assert details["seed"] == 5
    assert details["top_tokens"] == [[{"id": 104, "text": "h", "logprob": -0.1, "special": False}], []]


ERRORS = [("invalid_request", 422, "validation"), ("not_found", 422, "validation"), ("too_large", 413, "validation"),
          ("busy", 429, "overloaded"), ("internal", 424, "generation"), ("timeout", 424, "generation"),
          ("load_failed", 424, "generation"), ("unavailable", 503, "unavailable")]


@pytest.mark.parametrize("kind,status,error_type", ERRORS)
def test_error_kinds_map_to_tgi_status_and_type(kind, status, error_type):
    assert tr.error_status(kind) == (status, error_type)


def test_context_errors_are_worded_like_tgi_with_the_numbers():
    over = ContextLengthError("x", prompt_tokens=250, context_length=256, max_tokens=10)
    assert tr.error_message(over) == ("`inputs` tokens + `max_new_tokens` must be <= 256. "
                                      "Given: 250 `inputs` tokens and 10 `max_new_tokens`")
    full = ContextLengthError("x", prompt_tokens=300, context_length=256, max_tokens=None)
    assert tr.error_message(full) == "`inputs` must have less than 256 tokens. Given: 300"


def test_timing_headers_are_tgi_names_in_milliseconds():
    usage = Usage(prompt_tokens=3, completion_tokens=4, queue_s=0.25, prompt_eval_s=0.5, eval_s=1.5, total_s=2.25)
    headers = tr.timing_headers(usage, "Hello")
    assert headers["x-compute-type"] == "cpu" and headers["x-compute-time"].startswith("2.25")
    assert (headers["x-total-time"], headers["x-queue-time"], headers["x-inference-time"]) == ("2250", "250", "2000")
    assert headers["x-time-per-token"] == "500"
    assert (headers["x-prompt-tokens"], headers["x-generated-tokens"], headers["x-compute-characters"]) == \
        ("3", "4", "5")


def test_info_has_every_field_tgi_clients_read():
    info = tr.info("tiny:latest", 256, 65, "0.1.0")
    assert info["model_id"] == "tiny:latest" and info["max_total_tokens"] == 256 and info["max_input_tokens"] == 255
    assert info["max_concurrent_requests"] == 65 and info["max_best_of"] == 1 and info["max_stop_sequences"] == 4
    assert info["router"] == "text-generation-router" and info["model_pipeline_tag"] == "text-generation"
    assert info["sha"] is None and info["docker_label"] is None and info["model_sha"] is None
    assert info["model_dtype"] == "gguf" and info["validation_workers"] == 1 and info["max_client_batch_size"] == 1


def test_a_stream_that_ends_without_a_final_chunk_closes_as_cancelled():
    """The engine ends a request dismissed while queued with no final chunk; TGI's stream still gets its last event."""
    plan = tr.StreamPlan(details=True, eos_token=lambda: (1, "<eos>"))
    events = list(tr.stream_payloads([], plan))
    assert len(events) == 1 and events[0]["token"]["special"] is True
    assert events[0]["generated_text"] == ""
    assert events[0]["details"]["finish_reason"] == "cancelled"


def test_a_pending_token_is_flushed_as_the_cancelled_end_when_no_final_chunk_comes():
    """Tokens already sent stay; the last one carries the text and the cancelled details."""
    events = list(tr.stream_payloads([token_chunk("h"), token_chunk("i")], tr.StreamPlan(details=True)))
    assert [e["index"] for e in events] == [1, 2]
    assert events[-1]["generated_text"] == "hi" and events[-1]["details"]["finish_reason"] == "cancelled"
    assert events[0]["generated_text"] is None
