"""Tool calls parsed out of model output, streaming-safe: Hermes/Qwen `<tool_call>` JSON, Llama 3.x JSON
(bare or after `<|python_tag|>`) and Mistral `[TOOL_CALLS]`; a malformed call comes back as plain text."""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Iterable
from typing import Iterator
from typing import Optional
from typing import Union

from ollama_server.engine.generation import Generation
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import ToolCall

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
PYTHON_TAG = "<|python_tag|>"
_MARKERS = (HERMES_OPEN, MISTRAL, PYTHON_TAG)
_DECODER = json.JSONDecoder()

Event = Union[str, ToolCall]


def new_call_id() -> str:
    """An OpenAI-style id for a call the model made."""
    return f"call_{uuid.uuid4().hex[:24]}"


def call_from(value: object) -> Optional[ToolCall]:
    """A ToolCall from one decoded JSON object ({"name", "arguments" | "parameters"}), None if it is not one."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "function" and isinstance(value.get("function"), dict):
        value = value["function"]  # the OpenAI shape, which some fine-tunes copy
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # stringified arguments: accept them only if they are a JSON object
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(name=name, arguments=json.dumps(arguments, ensure_ascii=False), id=new_call_id())


def _calls_from(value: object) -> Optional[list[ToolCall]]:
    """One call or a list of calls, or None if any element is not a call."""
    items = value if isinstance(value, list) else [value]
    calls = [call_from(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls  # type: ignore[return-value]


def _decode(text: str) -> Optional[tuple[object, int]]:
    """(value, end) of the JSON value at the start of `text` (after whitespace), None if not (yet) complete."""
    start = len(text) - len(text.lstrip())
    try:
        value, end = _DECODER.raw_decode(text, start)
    except ValueError:
        return None
    return value, end


def _held_suffix(text: str) -> int:
    """How many trailing characters of `text` could be the start of a marker (held back, not streamed yet)."""
    for size in range(min(len(text), max(map(len, _MARKERS)) - 1), 0, -1):
        tail = text[-size:]
        if any(marker.startswith(tail) for marker in _MARKERS):
            return size
    return 0


class ToolCallParser:
    """Feed output text piece by piece; get back text to stream and complete tool calls, in order."""

    def __init__(self) -> None:
        self._buffer = ""
        self._mode = "text"  # text | hermes | mistral | python | bare
        self._opening = ""   # the marker text that opened the current call, given back if it is malformed
        self._started = False  # anything but whitespace seen: bare JSON counts only as the whole reply
        self._after_call = False  # whitespace right after a call separates calls: not content unless text follows

    def feed(self, text: str) -> list[Event]:
        """Events for the next piece of output."""
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> list[Event]:
        """Events for whatever is held back once the output has ended (an unfinished call is text)."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        while True:
            before = (self._mode, self._buffer)
            handler = getattr(self, f"_in_{self._mode}")
            new = handler(final)
            if new and isinstance(new[-1], ToolCall):
                self._after_call = True
            events.extend(new)
            if (self._mode, self._buffer) == before or not self._buffer and self._mode == "text":
                break
        return [e for e in events if not (isinstance(e, str) and not e)]

    def _give_back(self) -> list[Event]:
        text, self._buffer, self._mode = self._opening + self._buffer, "", "text"
        self._started = True
        return [text]

    def _in_text(self, final: bool) -> list[Event]:
        buffer = self._buffer
        if self._after_call and not buffer.strip():
            if final:
                self._buffer = ""
            return []
        if not self._started:
            stripped = buffer.lstrip()
            if not stripped and not final:
                return []  # leading whitespace: a bare JSON call may follow
            if stripped.startswith("{"):
                self._mode, self._opening, self._buffer = "bare", buffer[:len(buffer) - len(stripped)], stripped
                return []
        found = [(buffer.find(m), m) for m in _MARKERS if m in buffer]
        if found:
            index, marker = min(found)
            self._started = True
            if self._after_call and not buffer[:index].strip():
                buffer = buffer[index:]
                index = 0
            self._after_call = False
            self._mode = {HERMES_OPEN: "hermes", MISTRAL: "mistral", PYTHON_TAG: "python"}[marker]
            self._opening, self._buffer = marker, buffer[index + len(marker):]
            return [buffer[:index]]
        held = 0 if final else _held_suffix(buffer)
        out, self._buffer = buffer[:len(buffer) - held], buffer[len(buffer) - held:]
        if out.strip():
            self._started = True
            self._after_call = False
        elif self._after_call:  # only whitespace before a held marker start: keep holding it all
            self._buffer = buffer
            return []
        return [out]

    def _in_hermes(self, final: bool) -> list[Event]:
        end = self._buffer.find(HERMES_CLOSE)
        if end < 0:
            if final:  # some models stop without the closing tag: a complete call still counts
                decoded = _decode(self._buffer)
                calls = _calls_from(decoded[0]) if decoded and not self._buffer[decoded[1]:].strip() else None
                if calls:
                    self._buffer, self._mode = "", "text"
                    return list(calls)
                return self._give_back()
            return []
        body, rest = self._buffer[:end], self._buffer[end + len(HERMES_CLOSE):]
        decoded = _decode(body)
        calls = _calls_from(decoded[0]) if decoded and not body[decoded[1]:].strip() else None
        if not calls:
            self._buffer = body + HERMES_CLOSE
            events = self._give_back()
            self._buffer = rest
            return events
        self._buffer, self._mode = rest, "text"
        return list(calls)

    def _json_calls(self, final: bool, allow_more: bool) -> list[Event]:
        """Calls from the JSON value at the start of the buffer (Mistral, python tag and bare JSON)."""
        decoded = _decode(self._buffer)
        if decoded is None:
            return self._give_back() if final else []
        calls = _calls_from(decoded[0])
        if not calls:
            return self._give_back()
        rest = self._buffer[decoded[1]:]
        self._buffer, self._mode = rest, ("between" if allow_more else "text")
        return list(calls)

    def _in_between(self, final: bool) -> list[Event]:
        """After a python-tag call: `;` and another call (Llama 3.1), or back to text."""
        stripped = self._buffer.lstrip()
        if not stripped and not final:
            return []
        if stripped.startswith(";"):
            self._mode, self._opening, self._buffer = "python", ";", stripped[1:]
            return []
        self._mode = "text"
        return []

    def _in_bare(self, final: bool) -> list[Event]:
        stripped = self._buffer[1:].lstrip()
        if stripped and not stripped.startswith('"'):  # `{` then not a key: an answer, not a call
            return self._give_back()
        return self._json_calls(final, allow_more=False)

    def _in_python(self, final: bool) -> list[Event]:
        return self._json_calls(final, allow_more=True)

    def _in_mistral(self, final: bool) -> list[Event]:
        stripped = self._buffer.lstrip()
        if not stripped:
            return self._give_back() if final else []
        if stripped[0] in "[{":  # [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
            return self._json_calls(final, allow_more=False)
        index = self._buffer.find(MISTRAL_ARGS)  # newer: [TOOL_CALLS]name[ARGS]{...}
        if index < 0:
            return self._give_back() if final else []
        name = self._buffer[:index].strip()
        decoded = _decode(self._buffer[index + len(MISTRAL_ARGS):])
        if decoded is None:
            return self._give_back() if final else []
        call = call_from({"name": name, "arguments": decoded[0]})
        if call is None:
            return self._give_back()
        rest = self._buffer[index + len(MISTRAL_ARGS) + decoded[1]:]
        self._buffer = rest.lstrip()[len(MISTRAL):] if rest.lstrip().startswith(MISTRAL) else rest
        self._mode = "mistral" if rest.lstrip().startswith(MISTRAL) else "text"
        return [call]


def parse(text: str) -> tuple[str, list[ToolCall]]:
    """(the text outside calls, the calls) of a whole output."""
    parser = ToolCallParser()
    events = parser.feed(text) + parser.finish()
    return "".join(e for e in events if isinstance(e, str)), [e for e in events if isinstance(e, ToolCall)]


def parses_tools(request: GenerateRequest) -> bool:
    """True when the output of `request` is to be searched for tool calls."""
    return bool(request.tools) and request.tool_choice != "none"


def with_tool_calls(chunks: Iterable[Chunk], request: GenerateRequest) -> Iterator[Chunk]:
    """The chunks of a generation with tool calls taken out of their text (unchanged when no tools apply).

    Text that may begin a call is held back until the call completes (or turns out not to be one); the
    last chunk carries whatever was held. Without parallel_tool_calls only the first call is kept.
    """
    if not parses_tools(request):
        yield from chunks
        return
    parser = ToolCallParser()
    seen = 0
    for chunk in chunks:
        events = parser.feed(chunk.text)
        if chunk.finish_reason is not None:
            events += parser.finish()
        text = "".join(e for e in events if isinstance(e, str))
        calls = [e for e in events if isinstance(e, ToolCall)]
        if not request.parallel_tool_calls:
            calls = calls[:max(0, 1 - seen)]
        seen += len(calls)
        if text or calls or chunk.finish_reason is not None or chunk.reasoning or chunk.logprobs:
            yield replace(chunk, text=text, tool_calls=tuple(calls))


class ToolCallGeneration(Generation):
    """A Generation whose chunks carry the tool calls parsed from its output (what dialects iterate)."""

    def __iter__(self) -> Iterator[Chunk]:
        return with_tool_calls(super().__iter__(), self.request)
