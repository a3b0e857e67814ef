"""The /v1/responses routes on the scripted back-end: the Response shape, the event sequence, stored
conversations (previous_response_id, GET, DELETE) and errors in OpenAI's shape."""
from __future__ import annotations

import json
import threading

from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from ollama_server.api.responses.routes import STORE_KEY
from ollama_server.api.responses.store import ResponseStore
from ollama_server.engine.types import UnavailableError
from ollama_server.services import EXTENSION_KEY

GUARD_S = 30.0  # failure guard only
EVENTS = TypeAdapter(ResponseStreamEvent)
TEXT_SEQUENCE = ["response.created", "response.in_progress", "response.output_item.added",
                 "response.content_part.added"]
TEXT_END = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.completed"]


def events_of(text: str) -> list[dict]:
    """The data of each SSE frame; the event line must repeat its type."""
    found = []
    for frame in text.split("\n\n"):
        if frame.strip():
            name_line, data_line = frame.split("\n")
            data = json.loads(data_line[len("data: "):])
            assert name_line == f"event: {data['type']}"
            found.append(data)
    return found


def create(client, **fields):
    return client.post("/v1/responses", json={"model": "tiny", **fields})


def prompt_of(fake_backend) -> str:
    return "".join(chr(t) for t in fake_backend.history[-1][1])


def test_a_response_has_the_shape_openai_python_parses(client, fake_backend):
    fake_backend.enqueue("Paris.")
    reply = create(client, input="Capital of France?")
    assert reply.status_code == 200
    payload = reply.get_json()
    parsed = SdkResponse.model_validate(payload)
    assert parsed.output_text == "Paris." and parsed.status == "completed"
    assert payload["id"].startswith("resp_") and payload["object"] == "response"
    assert payload["model"] == "tiny:latest" and payload["output"][0]["id"].startswith("msg_")
    assert payload["usage"]["output_tokens"] == 6
    assert payload["usage"]["total_tokens"] == payload["usage"]["input_tokens"] + 6
    assert reply.headers["X-Request-Id"] == payload["id"]


def test_instructions_and_input_items_reach_the_chat_template(client, fake_backend):
    fake_backend.enqueue("ok")
    create(client, instructions="Be brief.", input=[{"role": "user", "content": [{"type": "input_text",
                                                                                   "text": "Hello"}]}])
    assert prompt_of(fake_backend) == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello"
                                       "<|im_end|>\n<|im_start|>assistant\n")


def test_max_output_tokens_makes_an_incomplete_response(client, fake_backend):
    fake_backend.enqueue("abcdefgh", end=False)
    payload = create(client, input="x", max_output_tokens=3).get_json()
    assert SdkResponse.model_validate(payload).output_text == "abc"
    assert payload["status"] == "incomplete" and payload["incomplete_details"] == {"reason": "max_output_tokens"}


def test_thinking_comes_back_as_a_reasoning_item(client, fake_backend):
    fake_backend.enqueue("<think>let me see</think>42")
    payload = create(client, input="x").get_json()
    parsed = SdkResponse.model_validate(payload)
    assert [item.type for item in parsed.output] == ["reasoning", "message"]
    assert parsed.output[0].content[0].text == "let me see" and parsed.output_text == "42"


def test_a_reasoning_effort_for_a_model_that_cannot_think_is_a_400_naming_it(client, fake_backend):
    reply = create(client, input="x", reasoning={"effort": "high"})
    assert reply.status_code == 400 and reply.get_json()["error"]["param"] == "reasoning.effort"


def test_a_stream_sends_the_response_events_in_order_with_sequence_numbers(client, fake_backend):
    fake_backend.enqueue("Hi!")
    reply = create(client, input="x", stream=True)
    assert reply.status_code == 200 and reply.mimetype == "text/event-stream"
    events = events_of(reply.get_data(as_text=True))
    for event in events:
        EVENTS.validate_python(event)  # every event is one openai-python knows
    types = [event["type"] for event in events]
    assert types == TEXT_SEQUENCE + ["response.output_text.delta"] * 3 + TEXT_END
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hi!"
    final = SdkResponse.model_validate(events[-1]["response"])
    assert final.output_text == "Hi!" and final.id == events[0]["response"]["id"]
    assert events[0]["response"]["status"] == "in_progress" and final.usage.output_tokens == 3


def test_a_stream_that_thinks_opens_a_reasoning_item_first(client, fake_backend):
    fake_backend.enqueue("<think>hm</think>ok")
    events = events_of(create(client, input="x", stream=True).get_data(as_text=True))
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["reasoning", "message"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1]
    final = events[-1]["response"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "hm"}]


def test_a_stream_cut_at_max_output_tokens_ends_with_response_incomplete(client, fake_backend):
    fake_backend.enqueue("abcdef", end=False)
    events = events_of(create(client, input="x", stream=True, max_output_tokens=2).get_data(as_text=True))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_previous_response_id_prepends_the_earlier_input_and_output(client, fake_backend):
    fake_backend.enqueue("Paris.")
    first = create(client, input="Capital of France?", instructions="Only once.").get_json()
    fake_backend.enqueue("Berlin.")
    second = create(client, input="And Germany?", previous_response_id=first["id"]).get_json()
    assert second["previous_response_id"] == first["id"]
    assert prompt_of(fake_backend) == (
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n"
        "<|im_start|>user\nAnd Germany?<|im_end|>\n<|im_start|>assistant\n")
    fake_backend.enqueue("Rome.")
    create(client, input="Italy?", previous_response_id=second["id"])
    assert prompt_of(fake_backend).count("<|im_start|>user") == 3


def test_a_streamed_response_can_be_continued(client, fake_backend):
    fake_backend.enqueue("one")
    events = events_of(create(client, input="a", stream=True).get_data(as_text=True))
    fake_backend.enqueue("two")
    create(client, input="b", previous_response_id=events[-1]["response"]["id"])
    assert "<|im_start|>assistant\none<|im_end|>" in prompt_of(fake_backend)


def test_an_unknown_previous_response_id_is_a_404_in_openais_shape(client, fake_backend):
    reply = create(client, input="x", previous_response_id="resp_nope")
    assert reply.status_code == 404
    error = reply.get_json()["error"]
    assert error["param"] == "previous_response_id" and "resp_nope" in error["message"]
    assert error["type"] == "not_found_error"
    assert fake_backend.history == []


def test_a_response_not_stored_cannot_be_continued_or_retrieved(client, fake_backend):
    fake_backend.enqueue("x")
    payload = create(client, input="x", store=False).get_json()
    assert payload["store"] is False
    assert client.get(f"/v1/responses/{payload['id']}").status_code == 404
    assert create(client, input="y", previous_response_id=payload["id"]).status_code == 404


def test_a_stored_response_is_retrieved_as_answered_and_deleted(client, fake_backend):
    fake_backend.enqueue("kept")
    payload = create(client, input="x").get_json()
    assert client.get(f"/v1/responses/{payload['id']}").get_json() == payload
    deleted = client.delete(f"/v1/responses/{payload['id']}")
    assert deleted.get_json() == {"id": payload["id"], "object": "response", "deleted": True}
    assert client.get(f"/v1/responses/{payload['id']}").status_code == 404
    assert client.delete(f"/v1/responses/{payload['id']}").status_code == 404


def test_an_unknown_field_is_a_400_naming_it(client):
    reply = create(client, input="x", frobnicate=1)
    assert reply.status_code == 400 and reply.get_json()["error"]["param"] == "frobnicate"


def test_a_wrongly_typed_field_is_a_400_naming_it(client):
    reply = create(client, input="x", max_output_tokens="10")
    assert reply.status_code == 400 and reply.get_json()["error"]["param"] == "max_output_tokens"


def test_a_json_schema_format_constrains_generation_with_its_grammar(client, fake_backend):
    fake_backend.enqueue('{"a": 1}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    payload = create(client, input="x", text={"format": {"type": "json_schema", "name": "s", "schema": schema}})
    assert payload.status_code == 200
    assert fake_backend.grammars[-1] == "root ::= " + json.dumps(json.dumps(schema, sort_keys=True))
    assert payload.get_json()["text"]["format"]["type"] == "json_schema"


def wait_until(condition, what: str) -> None:
    """Poll a predicate; the deadline only turns a hang into a failure."""
    pause = threading.Event()
    for _ in range(int(GUARD_S / 0.005)):
        if condition():
            return
        pause.wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_engine_failure_mid_stream_ends_with_response_failed(make_app, fake_backend):
    client = make_app().test_client()
    engine = client.application.extensions[EXTENSION_KEY].engine
    fake_backend.gate.clear()  # hold the generation before its first token
    try:
        reply = client.post("/v1/responses", headers={"X-Request-Id": "held-1"}, buffered=False,
                            json={"model": "tiny", "input": "x", "stream": True})
        frames = iter(reply.response)
        first = next(frames).decode()
        assert first.startswith("event: response.created")
        wait_until(lambda: engine.get_request("held-1") is not None, "the request to be booked")
        engine.get_request("held-1").fail(UnavailableError("the server is shutting down"))
        rest = b"".join(frames).decode()
    finally:
        fake_backend.gate.set()
    events = events_of(first + rest)
    EVENTS.validate_python(events[-1])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "the server is shutting down"}


def test_the_store_forgets_by_count_and_by_age():
    clock = [0.0]
    store = ResponseStore(max_items=2, max_age_s=10.0, clock=lambda: clock[0])
    for name in ("a", "b", "c"):
        store.put({"id": name}, ())
    assert store.get("a") is None and store.get("b") is not None and len(store) == 2
    clock[0] = 10.5
    assert store.get("c") is None and len(store) == 0


def test_the_store_forgets_the_oldest_beyond_its_byte_budget_but_keeps_the_newest():
    store = ResponseStore(max_items=100, max_bytes=3000)
    for name in ("a", "b", "c"):
        store.put({"id": name, "text": "x" * 1200}, ())
    assert store.get("a") is None and store.get("b") is not None and store.get("c") is not None
    store.put({"id": "huge", "text": "x" * 10_000}, ())  # alone over the budget: kept, everything older goes
    assert len(store) == 1 and store.get("huge") is not None
    assert store.delete("huge") and len(store) == 0
    store.put({"id": "d", "text": "x" * 1200}, ())
    store.put({"id": "e", "text": "x" * 1200}, ())
    assert store.get("d") is not None  # the deleted one's bytes were given back


def test_each_app_has_its_own_store(make_app):
    first, second = make_app(), make_app()
    assert first.extensions[STORE_KEY] is not second.extensions[STORE_KEY]


def test_hostile_input_items_are_400s_naming_the_place_never_500s(client, fake_backend):
    cases = {"input.0.type": [{"type": ["message"], "role": "user", "content": "x"}],
             "input.0.role": [{"role": {"a": 1}, "content": "x"}],
             "input.0.content": [{"role": "user"}],
             "input.0.content.0": [{"role": "user", "content": [["input_text"]]}],
             "input.0.content.0.text": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}
    for param, items in cases.items():
        reply = create(client, input=items)
        assert (reply.status_code, reply.get_json()["error"]["param"]) == (400, param)
    assert create(client, input=[1, 2]).status_code == 400
    assert create(client, input=42).get_json()["error"]["param"] == "input"
    assert create(client, input=[]).get_json()["error"]["param"] == "input"
    assert fake_backend.history == []
