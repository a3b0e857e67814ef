"""Request records: one immutable line per finished, failed, cancelled or rejected request, and the
bounded, sequence-numbered log that metrics and alerts drain without touching the engine's locks."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable
from typing import Optional
from typing import TypeVar

from ollama_server.engine.types import EngineError

OUTCOMES = ("done", "failed", "cancelled", "rejected")
T = TypeVar("T")


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request; durations in seconds, None where they do not apply."""

    seq: int
    request_id: str
    dialect: str
    endpoint: str
    model: str
    outcome: str                    # one of OUTCOMES
    error_kind: Optional[str]       # the EngineError / ApiError kind when it failed or was rejected
    finish_reason: Optional[str]    # "stop" | "length" | "cancelled" when it produced an ending
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    queue_s: Optional[float]
    ttft_s: Optional[float]         # submit to first token (queueing and model load included)
    duration_s: float
    finished_at: float              # wall clock (time.time())
    http_status: Optional[int] = None  # set for requests refused by the HTTP layer before the engine


class RequestLog:
    """The last `capacity` records; `append` is O(1) and `since(seq)` copies what a reader has not seen."""

    def __init__(self, capacity: int = 10000, clock=time.time):
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()  # its own: appending never waits on the engine, nor the engine on readers
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=capacity)
        self._next_seq = 1

    def append(self, **fields) -> RequestRecord:
        """Add a record (every RequestRecord field but seq and finished_at); returns it."""
        with self._lock:
            record = RequestRecord(seq=self._next_seq, finished_at=self.clock(), **fields)
            self._next_seq += 1
            self._records.append(record)
        return record

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest record (0 before the first)."""
        with self._lock:
            return self._next_seq - 1

    def since(self, seq: int) -> tuple[list[RequestRecord], int]:
        """Records newer than `seq`, and how many newer ones were already dropped for lack of room."""
        with self._lock:
            records = [record for record in self._records if record.seq > seq]
            oldest = self._records[0].seq if self._records else self._next_seq
        return records, max(0, oldest - seq - 1)


def recorded_call(log: RequestLog, call: Callable[[], T], *, dialect: str, endpoint: str, model: str,
                  prompt_tokens: Callable[[T], int], model_of: Callable[[T], str]) -> T:
    """Run a request that generates no tokens (embeddings, scoring) and append its one record, however it ends."""
    started = time.monotonic()
    outcome, kind, result = "failed", None, None
    try:
        result = call()
        outcome = "done"
        return result
    except EngineError as exc:
        outcome, kind = ("rejected" if exc.kind == "invalid_request" else "failed"), exc.kind
        raise
    finally:
        log.append(request_id="", dialect=dialect, endpoint=endpoint,
                   model=model_of(result) if result is not None else model, outcome=outcome, error_kind=kind,
                   finish_reason=None, prompt_tokens=prompt_tokens(result) if result is not None else 0,
                   completion_tokens=0, cached_tokens=0, queue_s=None, ttft_s=None,
                   duration_s=time.monotonic() - started)
