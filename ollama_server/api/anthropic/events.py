"""Pure SSE sequencing of a streamed Message: engine chunks in, Anthropic's named events out."""
from __future__ import annotations

from typing import Iterable
from typing import Iterator
from typing import Optional

from ollama_server.api.anthropic import translate as tr
from ollama_server.api.anthropic.tools import tool_use_block
from ollama_server.api.errors import ApiError
from ollama_server.api.streaming import dumps
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage


def sse(event: str, payload: dict) -> str:
    """One named event: Anthropic's SDKs dispatch on the `event:` line, and its data repeats the type."""
    return f"event: {event}\ndata: {dumps(payload)}\n\n"


def error_event(error: ApiError, status: int) -> str:
    """A failure after the 200 went out: Anthropic's `error` event."""
    return sse("error", tr.error_body(error, status))


class MessageStream:
    """Turns one generation's chunks into message_start, content blocks, message_delta and message_stop."""

    def __init__(self, message_id: str, model: str, input_tokens: int, show_thinking: bool):
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self.show_thinking = show_thinking
        self.index = -1                     # the open block's index (-1: none opened yet)
        self.open_type: Optional[str] = None
        self.pinged = False
        self.called = False                 # a tool_use block went out: the message ends with stop_reason tool_use

    def start(self) -> str:
        usage = Usage(prompt_tokens=self.input_tokens)
        return sse("message_start", {"type": "message_start", "message": tr.message_json(
            self.message_id, self.model, [], None, None, usage)})

    def _open(self, kind: str, block: Optional[dict] = None) -> Iterator[str]:
        if self.open_type == kind and kind != "tool_use":  # every call is a block of its own
            return
        yield from self._close()
        self.index += 1
        self.open_type = kind
        if block is None:
            block = {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "",
                                                                         "signature": ""}
        yield sse("content_block_start", {"type": "content_block_start", "index": self.index,
                                          "content_block": block})
        if not self.pinged:  # Anthropic pings once right after the first block opens
            self.pinged = True
            yield sse("ping", {"type": "ping"})

    def _close(self) -> Iterator[str]:
        if self.open_type is not None:
            yield sse("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.open_type = None

    def _delta(self, kind: str, text: str) -> Iterator[str]:
        yield from self._open(kind)
        delta = {"type": "text_delta", "text": text} if kind == "text" else {"type": "thinking_delta",
                                                                              "thinking": text}
        yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def _tool_use(self, call: ToolCall) -> Iterator[str]:
        """A whole call (the engine yields calls complete): the block with input {}, its input JSON, its stop."""
        block = {**tool_use_block(call), "input": {}}
        yield from self._open("tool_use", block)
        delta = {"type": "input_json_delta", "partial_json": call.arguments}
        yield sse("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})
        yield from self._close()
        self.called = True

    def feed(self, chunk: Chunk) -> Iterator[str]:
        """The events one chunk makes (thinking, text, then its tool calls, as the engine splits them)."""
        if chunk.reasoning and self.show_thinking:
            yield from self._delta("thinking", chunk.reasoning)
        if chunk.text:
            yield from self._delta("text", chunk.text)
        for call in chunk.tool_calls:
            yield from self._tool_use(call)

    def finish(self, last: Chunk) -> Iterator[str]:
        """Close the open block (an empty reply gets one empty text block), then message_delta and message_stop."""
        if self.index < 0:
            yield from self._open("text")
        yield from self._close()
        reason, sequence = tr.stop_reason(last.finish_reason, last.stop_kind, last.stop_match, self.called)
        usage = last.usage or Usage(prompt_tokens=self.input_tokens)
        yield sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                    "usage": tr.usage_json(usage)})
        yield sse("message_stop", {"type": "message_stop"})

    def events(self, chunks: Iterable[Chunk]) -> Iterator[str]:
        """The whole sequence for a generation's chunks (engine errors propagate to the caller)."""
        yield self.start()
        last = Chunk(finish_reason="stop", stop_kind="eos")
        for chunk in chunks:
            yield from self.feed(chunk)
            if chunk.finish_reason is not None:
                last = chunk
        yield from self.finish(last)
