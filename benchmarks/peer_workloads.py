"""The peer benchmark's client and workloads: the same streaming /v1/completions requests for every server."""
from __future__ import annotations

import json
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from typing import Callable
from typing import Iterator
from typing import Optional

import requests

GREEDY = {"temperature": 0}
SAMPLED = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}
QUESTIONS = [
    "Which of the facts above mention a river?", "Summarise the third fact in one sentence.",
    "Which fact is the oldest, and why?", "Name two facts about music.", "What does fact 5 say?",
    "Which facts involve a mountain?", "Pick the most surprising fact and explain it.",
    "How many facts mention a city?",
]
SHORT_TASKS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain, step by step and in detail, how bread is made from wheat.",
    "Describe a walk through a busy city market in the early morning.",
    "List many interesting facts about the planets of the solar system.",
]
_SUBJECTS = ["The old lighthouse", "A river otter", "The city library", "A mountain glacier", "The village baker",
             "A violin maker", "The northern railway", "A desert fox", "The harbour master", "A young astronomer",
             "The copper mine", "A forest ranger", "The clock tower", "A jazz pianist", "The salt marsh",
             "A beekeeper", "The stone bridge", "A river ferry", "The city orchestra", "A mountain hut"]
_VERBS = ["was rebuilt", "was first described", "was photographed", "was measured", "was celebrated",
          "was moved", "was painted", "was studied", "was repaired", "was mapped"]
_WHEN = ["in the spring of 1843", "after a long winter", "during the great flood of 1911", "before the war",
         "in a single afternoon", "over seven patient years", "at the turn of the century", "by candlelight",
         "in the autumn of 1962", "on a foggy morning"]
_WHY = ["because the townspeople insisted", "to the surprise of every visitor", "although nobody asked for it",
        "so that travellers could find their way", "after a heated debate in the council",
        "thanks to a generous anonymous gift", "while the newspapers argued about it",
        "for reasons that remain unclear", "as a favour to a distant cousin", "to settle an old bet"]


def turn(text: str) -> str:
    """A raw prompt in Gemma's turn format (no server-side chat template involved)."""
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


def facts(seed: int, count: int) -> list[str]:
    """`count` distinct, deterministic English sentences; the seed picks the combinations and their order."""
    rng = random.Random(seed)
    combos = [(s, v, w, y) for s in _SUBJECTS for v in _VERBS for w in _WHEN for y in _WHY]
    return [f"{s} {v} {w}, {y}." for s, v, w, y in rng.sample(combos, count)]


def sized(make: Callable[[int], str], target: int, count_tokens: Callable[[str], int]) -> int:
    """The largest n whose `make(n)` is at most `target` tokens (n grown in halving steps)."""
    n = 4
    step = max(1, int(n * target / max(count_tokens(make(n)), 1)) - n)
    while step:
        if count_tokens(make(n + step)) <= target:
            n += step
        else:
            step //= 2
    return n


def shared_prefix(seed: int, n: int) -> str:
    """Workload (c)'s system text: a new first line and a new order of facts per seed."""
    lines = "\n".join(f"{i + 1}. {fact}" for i, fact in enumerate(facts(seed, n)))
    return f"Reference sheet {seed * 7919 % 100000} of the town archive. Answer from it only.\n{lines}\n\n"


def passage(seed: int, n: int) -> str:
    """Workload (d)'s passage: one paragraph of distinct facts."""
    return " ".join(facts(10_000 + seed, n))


@dataclass
class Stream:
    """One streamed completion as the client saw it."""

    ok: bool = False
    tokens: int = 0
    sent: float = 0.0
    chunk_times: list = field(default_factory=list)
    text: str = ""
    error: str = ""

    @property
    def ttft(self) -> Optional[float]:
        return self.chunk_times[0] - self.sent if self.chunk_times else None

    def gaps(self) -> list[tuple[float, float]]:
        """(start, end) of every inter-token gap."""
        return list(zip(self.chunk_times, self.chunk_times[1:]))


def sse_events(lines: Iterator[bytes]) -> Iterator[dict]:
    """The JSON events of an OpenAI-style SSE stream's lines, up to `[DONE]` (the caller keeps `lines` referenced)."""
    for raw in lines:
        if not raw.startswith(b"data:"):
            continue
        data = raw[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


def complete(url: str, prompt: str, max_tokens: int, sampling: dict, ignore_eos: bool = True,
             on_chunk: Optional[Callable[[int], None]] = None) -> Stream:
    """Stream one OpenAI /v1/completions request; tokens from the final usage, else the content chunks."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": ignore_eos,
            "stream_options": {"include_usage": True}, **sampling}
    stream = Stream(sent=time.perf_counter())
    parts, usage = [], None
    try:
        with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as response:
            if response.status_code != 200:
                stream.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return stream
            lines = response.iter_lines()  # kept referenced: dropping it mid-read closes the stream
            for event in sse_events(lines):
                if "error" in event:
                    stream.error = str(event["error"])[:200]
                    return stream
                if event.get("usage"):
                    usage = event["usage"].get("completion_tokens")
                text = event["choices"][0].get("text") if event.get("choices") else None
                if text:
                    stream.chunk_times.append(time.perf_counter())
                    parts.append(text)
                    if on_chunk:
                        on_chunk(len(stream.chunk_times))
    except (requests.RequestException, ValueError) as exc:
        stream.error = str(exc)[:200]
        return stream
    stream.text = "".join(parts)
    stream.tokens = usage if usage is not None else len(stream.chunk_times)
    stream.ok = bool(stream.chunk_times)
    stream.error = "" if stream.ok else "no output"
    return stream


def percentile(values: list[float], pct: float) -> Optional[float]:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))]


def summarize(streams: list[Stream], wall: float) -> dict:
    """Aggregate tokens/s over the workload's wall time, TTFT p50/p95, ITL p95, errors."""
    good = [s for s in streams if s.ok]
    ttfts = [s.ttft for s in good]
    itls = [end - start for s in good for start, end in s.gaps()]
    tokens = sum(s.tokens for s in good)
    return {"requests": len(streams), "errors": len(streams) - len(good),
            "error_samples": [s.error for s in streams if not s.ok][:3], "completion_tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall if wall else 0.0, "ttft_p50_s": percentile(ttfts, 50),
            "ttft_p95_s": percentile(ttfts, 95), "itl_p95_s": percentile(itls, 95)}


def run_batch(url: str, jobs: list[dict], clients: int) -> dict:
    """Run `jobs` (keyword arguments of complete()) `clients` at a time; the summary plus each output text."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        streams = list(pool.map(lambda job: complete(url, **job), jobs))
    result = summarize(streams, time.perf_counter() - started)
    result["texts"] = [s.text for s in streams]
    return result


class Prompts:
    """Every workload's prompts, sized once with a tokenizer and rebuilt per round from that round's seed."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self.count = count_tokens
        self.prefix_facts = sized(lambda n: shared_prefix(0, n), 1500, count_tokens)
        self.passage_facts = sized(lambda n: passage(0, n), 600, count_tokens)
        self.long_facts = sized(lambda n: shared_prefix(99, n), 3000, count_tokens)

    def sizes(self) -> dict:
        """Token counts of round 0's prompts, for the report."""
        return {"c_shared_prefix": self.count(shared_prefix(0, self.prefix_facts)),
                "d_passage": self.count(passage(0, self.passage_facts)),
                "e_long_prompt": self.count(self.long(0))}

    def short(self, index: int) -> str:
        return turn(SHORT_TASKS[index % len(SHORT_TASKS)])

    def shared(self, round_index: int, question: int) -> str:
        return turn(shared_prefix(1 + round_index, self.prefix_facts) + QUESTIONS[question % len(QUESTIONS)])

    def grounded(self, round_index: int, index: int) -> str:
        text = passage(round_index * 3 + index, self.passage_facts)
        ask = ("Rewrite the following passage in plain, simple English, keeping every fact:" if index % 2 == 0
               else "Copy out, word for word, every sentence of the following passage that mentions a river:")
        return turn(f"{ask}\n\n{text}")

    def long(self, round_index: int) -> str:
        return turn(shared_prefix(500 + round_index, self.long_facts) + "Which facts mention a bridge?")


def workload_simple(url: str, prompts: Prompts, sampling: dict, clients: int) -> dict:
    """(a)/(b): 48 tokens, ignore_eos; 1 client: 8 requests in turn; 8 clients: 16 requests, 8 at a time."""
    total = 8 if clients == 1 else 16
    return run_batch(url, [{"prompt": prompts.short(i), "max_tokens": 48, "sampling": sampling}
                           for i in range(total)], clients)


def workload_shared(url: str, prompts: Prompts, round_index: int) -> dict:
    """(c): 8 clients at once, one cold ~1,500-token prefix, different questions, sampled, 32 tokens."""
    return run_batch(url, [{"prompt": prompts.shared(round_index, i), "max_tokens": 32, "sampling": SAMPLED}
                           for i in range(8)], 8)


def workload_grounded(url: str, prompts: Prompts, round_index: int) -> dict:
    """(d): 1 client, 3 passages of ~600 tokens to rewrite or extract from; greedy, 160 tokens, EOS allowed."""
    return run_batch(url, [{"prompt": prompts.grounded(round_index, i), "max_tokens": 160, "sampling": GREEDY,
                            "ignore_eos": False} for i in range(3)], 1)


def workload_interference(url: str, prompts: Prompts, round_index: int) -> dict:
    """(e): a ~3,000-token prompt sent once 7 sampled streams each have >= 8 tokens; their gaps around it."""
    ready = [threading.Event() for _ in range(7)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(complete, url, prompts.short(i), 160, SAMPLED, True,
                               lambda n, event=ready[i]: event.set() if n >= 8 else None) for i in range(7)]
        for index, event in enumerate(ready):
            # A failed stream never sets its event: stop waiting for it once its future is done.
            while not event.wait(0.05) and not futures[index].done():
                pass
        long_stream = complete(url, prompts.long(round_index), 16, SAMPLED)
        streams = [future.result() for future in futures]
    result = summarize(streams + [long_stream], time.perf_counter() - started)
    window = (long_stream.sent, long_stream.chunk_times[0] if long_stream.chunk_times else long_stream.sent)
    inside = [end - start for s in streams if s.ok for start, end in s.gaps()
              if start < window[1] and end > window[0]]
    # TTFT and ITL are the 7 decoding streams' alone; the long request's TTFT is reported by itself.
    decoding = summarize(streams, 0.0)
    for key in ("ttft_p50_s", "ttft_p95_s", "itl_p95_s"):
        result[key] = decoding[key]
    result.update({"long_ttft_s": long_stream.ttft, "long_error": long_stream.error,
                   "itl_p95_in_window_s": percentile(inside, 95), "gaps_in_window": len(inside),
                   "streams_still_decoding_at_send": sum(1 for s in streams if s.chunk_times and
                                                         s.chunk_times[-1] > long_stream.sent)})
    return result


def median_of(rounds: list[dict]) -> dict:
    """Per numeric field, the median over rounds (errors: the sum)."""
    merged: dict = {}
    for key, value in rounds[0].items():
        values = [r.get(key) for r in rounds]
        if key == "errors":
            merged[key] = sum(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = statistics.median(values)
    return merged


def parse_pairs(pairs: list[str], option: str) -> dict:
    """key=value pairs; values parsed as JSON when they are JSON (false, 3, "x"), else kept as text."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"peer: {option} expects key=value, got {pair!r}")
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value
    return found


def llama_tokenizer(url: str) -> Callable[[str], int]:
    """Token counts from llama-server's /tokenize (the same GGUF vocabulary as ours)."""
    def count(text: str) -> int:
        response = requests.post(url + "/tokenize", json={"content": text}, timeout=60)
        response.raise_for_status()
        return len(response.json()["tokens"])
    return count


def ratios(ours: dict, theirs: dict) -> dict:
    """ours/theirs for tokens/s (higher is better), theirs/ours for latencies (>1: we are faster)."""
    def div(a, b):
        return a / b if a and b else None
    found = {"tokens_per_s": div(ours.get("tokens_per_s"), theirs.get("tokens_per_s"))}
    for key in ("ttft_p50_s", "ttft_p95_s", "itl_p95_s", "itl_p95_in_window_s", "long_ttft_s"):
        if key in ours:
            found[key] = div(theirs.get(key), ours.get(key))
    return found
