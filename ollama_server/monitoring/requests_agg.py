"""Request aggregates over a sliding window, folded from the engine's RequestLog by sequence number.

What counts as what (the seed defines no rule, §2.7):
- successful: outcome "done";
- failed: outcome "failed", and "rejected" unless the HTTP layer refused it with a client error
  (4xx other than 408/429: bad JSON, unknown model; the service was fine);
- cancelled requests and client errors are counted (by outcome) but sit outside the success rate.
Endpoint status (thresholds aligned with the seed's alert thresholds, §2.5):
- "idle": no counted request in the window;
- "unhealthy": success rate < 85 % (error rate > 15 %, the critical alert) or average response ≥ 30 000 ms;
- "degraded": success rate < 95 % (error rate > 5 %, the warning alert) or average response > 10 000 ms;
- "healthy" otherwise. overallHealth is the worst endpoint status; idle endpoints count as healthy.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Callable
from typing import Iterable
from typing import Mapping
from typing import Optional

from ollama_server.engine.records import OUTCOMES
from ollama_server.engine.records import RequestRecord

DEGRADED_SUCCESS_PERCENT = 95.0
UNHEALTHY_SUCCESS_PERCENT = 85.0
DEGRADED_RESPONSE_MS = 10000.0
UNHEALTHY_RESPONSE_MS = 30000.0
DISPLAY_NAMES = {"openai": "OpenAI API", "ollama": "Ollama API", "vllm": "vLLM API", "tgi": "TGI API",
                 "anthropic": "Anthropic Messages API"}
_STATUS_ORDER = ("idle", "healthy", "degraded", "unhealthy")


def percentile(values: Iterable[float], q: float) -> Optional[float]:
    """The q-th percentile (0–100) by linear interpolation between closest ranks; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def is_success(record: RequestRecord) -> bool:
    """The request produced its answer."""
    return record.outcome == "done"


def is_failure(record: RequestRecord) -> bool:
    """The service let the client down (see the module docstring)."""
    if record.outcome == "failed":
        return True
    if record.outcome != "rejected":
        return False
    status = record.http_status
    return not (status is not None and 400 <= status < 500 and status not in (408, 429))


def _mean(values: list[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Aggregate:
    """One (dialect, endpoint, model) over the window; seconds, tokens, and a 0–1 success ratio."""

    dialect: str
    endpoint: str
    model: str
    count: int
    outcomes: dict[str, int]
    successful: int
    failed: int
    success_ratio: Optional[float]        # successful / (successful + failed)
    latency_avg_s: Optional[float]
    latency_p50_s: Optional[float]
    latency_p95_s: Optional[float]
    latency_p99_s: Optional[float]
    ttft_p50_s: Optional[float]
    ttft_p95_s: Optional[float]
    queue_avg_s: Optional[float]
    queue_p95_s: Optional[float]
    prompt_tokens: int
    completion_tokens: int
    tokens_per_second: Optional[float]    # completion tokens / request wall time, summed
    decode_tokens_per_second: Optional[float]  # completion tokens / (duration − TTFT), summed
    last_finished_at: Optional[float]


def aggregate(key: tuple[str, str, str], records: list[RequestRecord]) -> Aggregate:
    """Fold one group's records (any order) into an Aggregate."""
    outcomes = {outcome: 0 for outcome in OUTCOMES}
    for record in records:
        outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
    successful = sum(1 for r in records if is_success(r))
    failed = sum(1 for r in records if is_failure(r))
    # Latency over what the success rate counts: a client's bad request says nothing about speed.
    durations = [r.duration_s for r in records if is_success(r) or is_failure(r)]
    ttfts = [r.ttft_s for r in records if r.ttft_s is not None]
    queues = [r.queue_s for r in records if r.queue_s is not None]
    generated = [r for r in records if r.completion_tokens > 0 and r.duration_s > 0]
    wall = sum(r.duration_s for r in generated)
    decoding = [r for r in generated if r.ttft_s is not None and r.duration_s > r.ttft_s]
    decode_time = sum(r.duration_s - r.ttft_s for r in decoding)  # type: ignore[operator]
    return Aggregate(
        dialect=key[0], endpoint=key[1], model=key[2], count=len(records), outcomes=outcomes,
        successful=successful, failed=failed,
        success_ratio=successful / (successful + failed) if successful + failed else None,
        latency_avg_s=_mean(durations), latency_p50_s=percentile(durations, 50),
        latency_p95_s=percentile(durations, 95), latency_p99_s=percentile(durations, 99),
        ttft_p50_s=percentile(ttfts, 50), ttft_p95_s=percentile(ttfts, 95),
        queue_avg_s=_mean(queues), queue_p95_s=percentile(queues, 95),
        prompt_tokens=sum(r.prompt_tokens for r in records),
        completion_tokens=sum(r.completion_tokens for r in records),
        tokens_per_second=sum(r.completion_tokens for r in generated) / wall if wall > 0 else None,
        decode_tokens_per_second=(sum(r.completion_tokens for r in decoding) / decode_time
                                  if decode_time > 0 else None),
        last_finished_at=max((r.finished_at for r in records), default=None))


def endpoint_status(success_percent: Optional[float], average_ms: Optional[float]) -> str:
    """healthy | degraded | unhealthy | idle, by the thresholds in the module docstring."""
    if success_percent is None:
        return "idle"
    average_ms = average_ms or 0.0
    if success_percent < UNHEALTHY_SUCCESS_PERCENT or average_ms >= UNHEALTHY_RESPONSE_MS:
        return "unhealthy"
    if success_percent < DEGRADED_SUCCESS_PERCENT or average_ms > DEGRADED_RESPONSE_MS:
        return "degraded"
    return "healthy"


def overall_health(statuses: Iterable[str]) -> str:
    """The worst status; idle (and no endpoints at all) reads as healthy."""
    worst = max(statuses, key=_STATUS_ORDER.index, default="healthy")
    return "healthy" if worst == "idle" else worst


def iso_utc(timestamp: Optional[float]) -> Optional[str]:
    """1749328185.0 -> "2025-06-07T20:29:45Z", the seed's timestamp style."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RequestAggregator:
    """Drains a RequestLog by sequence number and keeps the last `window_s` seconds of records."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.time):
        self.window_s = window_s
        self.clock = clock
        self.last_seq = 0
        self.missed = 0  # records the log dropped before we drained them (it is bounded)
        self._lock = threading.Lock()
        self._records: collections.deque[RequestRecord] = collections.deque()
        self._last_seen: dict[tuple[str, str], float] = {}  # per endpoint, kept past the window

    def drain(self, log: Any) -> int:
        """Take what `log.since(last_seq)` has that we have not seen; returns how many were taken."""
        records, dropped = log.since(self.last_seq)
        return self.add(records, dropped)

    def add(self, records: Iterable[RequestRecord], dropped: int = 0) -> int:
        """Add records directly (tests, replays); ignores any already seen by sequence number."""
        taken = 0
        with self._lock:
            self.missed += dropped
            for record in sorted(records, key=lambda r: r.seq):
                if record.seq <= self.last_seq:
                    continue
                self._records.append(record)
                self.last_seq = record.seq
                key = (record.dialect, record.endpoint)
                self._last_seen[key] = max(self._last_seen.get(key, 0.0), record.finished_at)
                taken += 1
            self._prune()
        return taken

    def _prune(self) -> None:
        cutoff = self.clock() - self.window_s
        # finished_at is nearly monotonic in seq order; a late straggler just stays one more prune.
        while self._records and self._records[0].finished_at < cutoff:
            self._records.popleft()

    def records(self) -> list[RequestRecord]:
        """The records inside the window now."""
        with self._lock:
            self._prune()
            return list(self._records)

    def aggregates(self) -> list[Aggregate]:
        """One Aggregate per (dialect, endpoint, model) with records in the window, sorted by key."""
        groups: dict[tuple[str, str, str], list[RequestRecord]] = collections.defaultdict(list)
        for record in self.records():
            groups[(record.dialect, record.endpoint, record.model)].append(record)
        return [aggregate(key, groups[key]) for key in sorted(groups)]

    def api_health(self, endpoints: Optional[Mapping[tuple[str, str], str]] = None) -> dict[str, Any]:
        """The seed's `/api/metrics/apis` shape (§2.7); `endpoints` ({(dialect, path): name}) names/adds rows."""
        groups: dict[tuple[str, str], list[RequestRecord]] = collections.defaultdict(list)
        for record in self.records():
            groups[(record.dialect, record.endpoint)].append(record)
        names = dict(endpoints or {})
        with self._lock:
            seen = dict(self._last_seen)  # endpoints that went quiet stay listed, as idle
        rows = []
        for key in sorted(set(groups) | set(names) | set(seen)):
            agg = aggregate((key[0], key[1], ""), groups.get(key, []))
            percent = None if agg.success_ratio is None else round(agg.success_ratio * 100.0, 1)
            average_ms = None if agg.latency_avg_s is None else round(agg.latency_avg_s * 1000.0, 1)
            last = seen.get(key)
            rows.append({"endpoint": names.get(key) or DISPLAY_NAMES.get(key[0], key[0]), "path": key[1],
                         "total_requests": agg.successful + agg.failed, "successful_requests": agg.successful,
                         "failed_requests": agg.failed, "average_response_time": average_ms,
                         "success_rate": percent, "last_request_time": iso_utc(last),
                         "status": endpoint_status(percent, average_ms),
                         "cancelled_requests": agg.outcomes.get("cancelled", 0),
                         "client_errors": agg.count - agg.successful - agg.failed
                         - agg.outcomes.get("cancelled", 0)})
        return {"endpoints": rows, "timestamp": iso_utc(self.clock()),
                "overallHealth": overall_health(row["status"] for row in rows),
                "window_seconds": self.window_s}
