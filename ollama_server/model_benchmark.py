"""The dashboard's fixed per-model benchmark: one greedy generation through the engine's public submit(),
timed from its Usage, stored in the metrics database (storage/model_benchmarks.py)."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any
from typing import Callable
from typing import Optional

from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import Usage
from ollama_server.storage.model_benchmarks import BenchmarkStore

log = logging.getLogger(__name__)

# About 128 tokens of plain English for Gemma-style tokenizers: long enough to time the prompt pass,
# short enough for a 270M model to finish the whole benchmark in a few seconds.
PROMPT = (
    "The small harbour town wakes slowly on winter mornings. Fishing boats return before sunrise, and the "
    "market opens when the first crates of fish are carried up from the quay. Children walk to school along "
    "the sea wall, while shop owners sweep the pavement and chat about the weather. In the afternoon the wind "
    "usually rises, the cafes fill with workers, and the old lighthouse keeper climbs the hill to check the "
    "lamp. By evening the streets are quiet again, and the only sound is the water against the stones. "
    "Describe what a visitor might notice on a first walk through this town, mentioning the colours, the "
    "sounds and the smells."
)
MAX_TOKENS = 64
SAMPLING = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, seed=0)  # greedy: repeatable work


class BenchmarkBusy(Exception):
    """A benchmark of this model is already running."""

    def __init__(self, model: str):
        super().__init__(f"a benchmark of {model} is already running")
        self.model = model


def benchmark_request(model: str) -> GenerateRequest:
    """The fixed request: the prompt as raw text, greedy, exactly MAX_TOKENS tokens (EOS ignored)."""
    return GenerateRequest(model=model, prompt=PROMPT, max_tokens=MAX_TOKENS, min_tokens=MAX_TOKENS,
                           ignore_eos=True, sampling=SAMPLING, dialect="internal", endpoint="benchmark")


def timings(usage: Usage) -> dict[str, Any]:
    """Throughput from a generation's Usage: prompt tokens over the prompt pass (time to the first token
    without the queue and load), decode tokens after the first over the time from the first to the last."""
    decode = usage.completion_tokens - 1
    return {
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "prompt_tokens_per_second": usage.prompt_tokens / usage.prompt_eval_s if usage.prompt_eval_s > 0 else None,
        "decode_tokens_per_second": decode / usage.eval_s if decode > 0 and usage.eval_s > 0 else None,
        "ttft_s": usage.queue_s + usage.prompt_eval_s if usage.completion_tokens else None,
        "duration_s": usage.total_s}


class ModelBenchmarks:
    """`start(model)` runs the fixed benchmark on a background thread (one per model at a time);
    `latest`, `history` and `running` read the results.

    `engine_submit(GenerateRequest)` returns an iterable of Chunks (Engine.submit); `settings_getter(model)`
    returns the settings the model runs with ({gpu_layers, context, batch, threads, slots});
    `resolve(name)` returns the model's canonical name or raises (ModelNotFoundError)."""

    def __init__(self, store: BenchmarkStore, engine_submit: Callable[[GenerateRequest], Any],
                 settings_getter: Callable[[str], dict], resolve: Optional[Callable[[str], str]] = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self._submit = engine_submit
        self._settings = settings_getter
        self._resolve = resolve
        self._clock = clock
        self._ids = itertools.count(1)
        self._running: dict[str, tuple[str, threading.Thread]] = {}  # model -> (job id, thread)
        self._lock = threading.Lock()

    def start(self, model: str) -> dict[str, Any]:
        """{"id", "model", "status": "running"}; ModelNotFoundError for an unknown model, BenchmarkBusy when
        one is already running for it."""
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty string")
        name = self._resolve(model) if self._resolve is not None else model
        with self._lock:
            if name in self._running:
                raise BenchmarkBusy(name)
            job_id = f"bench-{next(self._ids)}"
            thread = threading.Thread(target=self._run, args=(name,), name=f"benchmark {name}", daemon=True)
            self._running[name] = (job_id, thread)
        thread.start()
        return {"id": job_id, "model": name, "status": "running"}

    def _run(self, model: str) -> None:
        started = self._clock()
        result: dict[str, Any] = {"at": started, "model": model}
        try:
            result["settings"] = self._settings(model)
            usage: Optional[Usage] = None
            for chunk in self._submit(benchmark_request(model)):
                if chunk.usage is not None:
                    usage = chunk.usage
            if usage is None:
                raise EngineError("the generation ended without timings")
            result.update(timings(usage), status="ok")
        except EngineError as exc:
            result.update(status="error", error=exc.message)
        except Exception as exc:  # a bug or a back-end crash: stored as a failed run, not lost in a thread
            log.exception("benchmark of %s failed", model)
            result.update(status="error", error=f"benchmark failed: {exc}")
        finally:
            self.store.add(result)
            with self._lock:
                self._running.pop(model, None)

    def latest(self, model: str) -> Optional[dict[str, Any]]:
        """The model's newest stored result, or None."""
        return self.store.latest(model)

    def history(self, model: str, limit: int = 20) -> list[dict[str, Any]]:
        """The model's newest results, newest first."""
        return self.store.history(model, limit)

    def running(self) -> list[str]:
        """Models being benchmarked now."""
        with self._lock:
            return sorted(self._running)

    def wait(self, model: str, timeout: Optional[float] = None) -> bool:
        """Block until the model's running benchmark (if any) is stored; True when none is left running."""
        with self._lock:
            entry = self._running.get(model)
        if entry is None:
            return True
        entry[1].join(timeout)
        return not entry[1].is_alive()


def engine_settings(engine: Any, settings: Any) -> Callable[[str], dict]:
    """A settings_getter over the engine: what the model's next load (or its current one) uses."""
    def current(model: str) -> dict:
        spec = engine.resolve(model)
        placement = engine.placements.get(spec.name)  # an applied weight distribution overrides the settings
        return {"gpu_layers": placement.gpu_layers if placement else settings.gpu_layers,
                "tensor_split": list(placement.tensor_split) if placement else list(settings.tensor_split),
                "context": engine.runtime_context(spec), "batch": settings.batch_size,
                "threads": settings.effective_threads, "slots": settings.parallel_slots}
    return current


def build_benchmarks(engine: Any, settings: Any, db_path: str) -> ModelBenchmarks:
    """The app's ModelBenchmarks: results in the metrics DB file, runs through engine.submit()."""
    store = BenchmarkStore(db_path, busy_timeout_s=settings.metrics_busy_timeout)
    return ModelBenchmarks(store, engine.submit, engine_settings(engine, settings),
                           resolve=lambda name: engine.resolve(name).name)
