"""Anthropic Messages bodies -> engine requests, and engine ends -> Anthropic's stop reasons (pure)."""
from __future__ import annotations

import pytest

from ollama_server.api.anthropic import translate as tr
from ollama_server.api.anthropic.schemas import CountTokensRequest
from ollama_server.api.anthropic.schemas import MessagesRequest
from ollama_server.api.errors import ApiError
from ollama_server.engine.types import Message
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import Usage


def body(**fields) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "tiny", "max_tokens": 64,
                                           "messages": [{"role": "user", "content": "Hi"}], **fields})


def test_system_string_and_text_blocks_become_one_system_message_before_the_turns():
    for system in ("Be brief.", [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]):
        request, _ = tr.from_messages_request(body(system=system), "/v1/messages")
        assert request.messages == (Message("system", "Be brief."), Message("user", "Hi"))


def test_text_blocks_are_joined_and_consecutive_turns_of_one_role_merged():
    request, _ = tr.from_messages_request(body(messages=[
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"}]), "/v1/messages")
    assert request.messages == (Message("user", "ab\n\nc"), Message("assistant", "d"), Message("user", "e"))


def test_sampling_stops_and_limits_reach_the_engine_request():
    request, _ = tr.from_messages_request(body(temperature=0.0, top_p=0.5, top_k=7, stop_sequences=["\n\n", "END"],
                                               metadata={"user_id": "u1"}), "/v1/messages")
    assert request.sampling.temperature == 0.0 and request.sampling.top_p == 0.5 and request.sampling.top_k == 7
    assert request.stop == ("\n\n", "END")
    assert request.max_tokens == 64 and request.cap_to_context
    assert request.dialect == "anthropic" and request.endpoint == "/v1/messages" and request.model == "tiny"


def test_unset_sampling_fields_keep_the_engine_defaults():
    request, _ = tr.from_messages_request(body(), "/v1/messages")
    assert request.sampling == SamplingParams()


@pytest.mark.parametrize("thinking, shown", [
    (None, False), ({"type": "disabled"}, False), ({"type": "enabled", "budget_tokens": 1024}, True),
    ({"type": "adaptive"}, True), ({"type": "enabled", "budget_tokens": 2000, "display": "omitted"}, False)])
def test_thinking_is_always_split_out_and_shown_only_when_enabled(thinking, shown):
    extra = {"thinking": thinking, "max_tokens": 4096} if thinking else {}
    request, think = tr.from_messages_request(body(**extra), "/v1/messages")
    assert request.split_thinking and think.show is shown


@pytest.mark.parametrize("fields, param", [
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}, "max_tokens": 4096}, "thinking.budget_tokens"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048}, "max_tokens"),
    ({"thinking": {"type": "disabled", "budget_tokens": 2048}}, "thinking.budget_tokens"),
    ({"mcp_servers": []}, "mcp_servers"),
    ({"stop_sequences": ["ok", ""]}, "stop_sequences.1"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}]},
     "messages.1"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
])
def test_what_cannot_be_served_is_a_400_naming_the_field(fields, param):
    with pytest.raises(ApiError) as caught:
        tr.from_messages_request(body(**fields), "/v1/messages")
    assert caught.value.kind == "invalid_request" and caught.value.param == param
    assert caught.value.message.startswith(param + ": ")


def test_thinking_blocks_of_earlier_assistant_turns_are_left_out_as_anthropic_does():
    request, _ = tr.from_messages_request(body(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "x", "signature": ""},
                                          {"type": "text", "text": "a"}]},
        {"role": "user", "content": "q2"}]), "/v1/messages")
    assert request.messages[1] == Message("assistant", "a")


def test_a_count_request_renders_the_same_messages_without_limits():
    count = CountTokensRequest.model_validate({"model": "tiny", "system": "S",
                                               "messages": [{"role": "user", "content": "Hi"}]})
    request = tr.from_count_request(count, "/v1/messages/count_tokens")
    assert request.messages == (Message("system", "S"), Message("user", "Hi")) and request.max_tokens is None


@pytest.mark.parametrize("finish, kind, match, expected", [
    ("stop", "eos", None, ("end_turn", None)),
    ("length", "length", None, ("max_tokens", None)),
    ("stop", "stop_sequence", "END", ("stop_sequence", "END")),
    ("cancelled", None, None, ("end_turn", None))])
def test_engine_ends_map_to_anthropic_stop_reasons(finish, kind, match, expected):
    assert tr.stop_reason(finish, kind, match) == expected


def test_usage_counts_the_cached_prefix_apart_from_the_new_input():
    assert tr.usage_json(Usage(prompt_tokens=50, completion_tokens=7, cached_tokens=20)) == {
        "input_tokens": 30, "output_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20}


@pytest.mark.parametrize("status, kind", [(400, "invalid_request_error"), (401, "authentication_error"),
                                          (403, "permission_error"), (404, "not_found_error"),
                                          (413, "request_too_large"), (415, "invalid_request_error"),
                                          (500, "api_error"), (501, "api_error"), (529, "overloaded_error")])
def test_error_types_follow_the_status(status, kind):
    assert tr.error_body(ApiError("x", "boom"), status) == {"type": "error", "error": {"type": kind,
                                                                                       "message": "boom"}}
