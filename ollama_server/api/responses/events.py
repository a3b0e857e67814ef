"""Pure SSE sequencing of a streamed Response: engine chunks in, OpenAI's response.* events out."""
from __future__ import annotations

from typing import Callable
from typing import Iterable
from typing import Iterator
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.api.responses import tools as tool_api
from ollama_server.api.responses import translate as tr
from ollama_server.api.streaming import dumps
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import ToolCall
from ollama_server.engine.types import Usage

# status -> the lifecycle event that ends the stream
FINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete",
                "cancelled": "response.incomplete", "failed": "response.failed"}


def sse(payload: dict) -> str:
    """One named event: the `event:` line repeats the data's type, as OpenAI sends it."""
    return f"event: {payload['type']}\ndata: {dumps(payload)}\n\n"


class ResponseStream:
    """Turns one generation's chunks into the created/in_progress, item, part, delta, function call and completed
    events."""

    def __init__(self, snapshot: Callable[..., dict], message_id: str, reasoning_id: str,
                 max_calls: Optional[int] = None):
        # snapshot(status, output, usage, incomplete, error) -> the Response object at that point
        self.snapshot = snapshot
        self.message_id = message_id
        self.reasoning_id = reasoning_id
        self.max_calls = max_calls
        self.calls = 0
        # Whitespace before any message text is held: a reply that only calls gets no empty message item.
        self.pending = ""
        self.sequence = -1
        self.output: list[dict] = []     # finished items, in order
        self.open: Optional[str] = None  # "reasoning" | "message" while an item is open
        self.text: list[str] = []
        self.response: Optional[dict] = None  # the final Response object, once sent

    def _event(self, kind: str, **fields) -> str:
        self.sequence += 1
        return sse({"type": kind, "sequence_number": self.sequence, **fields})

    def _where(self) -> dict:
        item_id = self.reasoning_id if self.open == "reasoning" else self.message_id
        return {"item_id": item_id, "output_index": len(self.output), "content_index": 0}

    def start(self) -> Iterator[str]:
        yield self._event("response.created", response=self.snapshot("in_progress", [], None))
        yield self._event("response.in_progress", response=self.snapshot("in_progress", [], None))

    def _open(self, kind: str) -> Iterator[str]:
        if self.open == kind:
            return
        yield from self._close("completed")
        self.open = kind
        self.text = []
        index = len(self.output)
        if kind == "reasoning":
            item = {**tr.reasoning_item(self.reasoning_id, "", "in_progress"), "content": []}
            part = {"type": "reasoning_text", "text": ""}
        else:
            if any(item["type"] == "message" for item in self.output):  # text after a call: a new message
                self.message_id = tr.new_id("msg")
            item = tr.message_item(self.message_id, None, "in_progress")
            part = tr.text_part("")
        yield self._event("response.output_item.added", output_index=index, item=item)
        yield self._event("response.content_part.added", part=part, **self._where())

    def _close(self, status: str) -> Iterator[str]:
        if self.open is None:
            return
        text = "".join(self.text)
        where = self._where()
        if self.open == "reasoning":
            item = tr.reasoning_item(self.reasoning_id, text, status)
            yield self._event("response.reasoning_text.done", text=text, **where)
            yield self._event("response.content_part.done", part={"type": "reasoning_text", "text": text}, **where)
        else:
            item = tr.message_item(self.message_id, text, status)
            yield self._event("response.output_text.done", text=text, logprobs=[], **where)
            yield self._event("response.content_part.done", part=tr.text_part(text), **where)
        yield self._event("response.output_item.done", output_index=where["output_index"], item=item)
        self.output.append(item)
        self.open = None

    def _delta(self, kind: str, text: str) -> Iterator[str]:
        yield from self._open(kind)
        self.text.append(text)
        if kind == "reasoning":
            yield self._event("response.reasoning_text.delta", delta=text, **self._where())
        else:
            yield self._event("response.output_text.delta", delta=text, logprobs=[], **self._where())

    def _text(self, text: str) -> Iterator[str]:
        if self.open != "message" and not text.strip():
            self.pending += text
            return
        text, self.pending = self.pending + text, ""
        yield from self._delta("message", text)

    def _call(self, call: ToolCall) -> Iterator[str]:
        """One function_call item: added (arguments ""), the arguments (whole: calls are parsed complete), done."""
        if self.max_calls is not None and self.calls >= self.max_calls:
            return  # beyond max_tool_calls (or a second call without parallel_tool_calls)
        yield from self._close("completed")
        self.pending = ""
        index, item_id = len(self.output), tr.new_id("fc")
        yield self._event("response.output_item.added", output_index=index,
                          item=tool_api.call_item(call, item_id, "in_progress", arguments=""))
        yield self._event("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                          delta=call.arguments)
        yield self._event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                          arguments=call.arguments)
        item = tool_api.call_item(call, item_id, "completed")
        yield self._event("response.output_item.done", output_index=index, item=item)
        self.output.append(item)
        self.calls += 1

    def feed(self, chunk: Chunk) -> Iterator[str]:
        """The events one chunk makes (reasoning before text, as the engine splits them, then its calls)."""
        if chunk.reasoning:
            yield from self._delta("reasoning", chunk.reasoning)
        if chunk.text:
            yield from self._text(chunk.text)
        for call in chunk.tool_calls:
            yield from self._call(call)

    def finish(self, last: Chunk) -> Iterator[str]:
        """Close the open item (a reply with neither text nor calls still gets its message), then the final
        lifecycle event."""
        status, incomplete = tr.status_of(last.finish_reason)
        item_status = "completed" if status == "completed" else "incomplete"
        if not self.calls and self.pending:
            yield from self._delta("message", self.pending)
        elif not self.calls and self.open != "message":
            yield from self._open("message")
        yield from self._close(item_status)
        self.response = self.snapshot(status, list(self.output), last.usage or Usage(), incomplete)
        yield self._event(FINAL_EVENTS[status], response=self.response)

    def fail(self, error: ApiError) -> Iterator[str]:
        """A failure after the 200 went out: response.failed carrying the error."""
        detail = {"code": "server_error" if error.kind != "busy" else "rate_limit_exceeded",
                  "message": error.message}
        yield self._event("response.failed", response=self.snapshot("failed", list(self.output), None, None,
                                                                    detail))

    def events(self, chunks: Iterable[Chunk]) -> Iterator[str]:
        """The whole sequence for a generation's chunks (engine errors propagate to the caller)."""
        yield from self.start()
        last = Chunk(finish_reason="stop", stop_kind="eos")
        for chunk in chunks:
            yield from self.feed(chunk)
            if chunk.finish_reason is not None:
                last = chunk
        yield from self.finish(last)
