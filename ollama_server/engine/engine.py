"""Engine: resolves the model, loads it on demand (LRU), checks limits, and queues the work."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable
from typing import Optional

from ollama_server.engine.backend import Backend
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.generation import Generation
from ollama_server.engine.placement import PlacementOverrides
from ollama_server.engine.records import RequestLog
from ollama_server.engine.runner import ModelRunner
from ollama_server.engine.schema_limits import SchemaLimits
from ollama_server.engine.schema_limits import check_grammar_size
from ollama_server.engine.schema_limits import check_schema
from ollama_server.engine.tracking import RequestBook
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import ModelLoadError
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import UnavailableError
from ollama_server.models import inspect
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import ModelSpec
from ollama_server.settings import Settings

log = logging.getLogger(__name__)


class Engine:
    """The one entry point for inference: `submit(request) -> Generation`."""

    def __init__(self, catalogue: Catalogue, backend: Backend, settings: Settings,
                 trained_context: Callable[[str], Optional[int]] | None = None,
                 placements: PlacementOverrides | None = None):
        self.catalogue = catalogue
        self.backend = backend
        self.settings = settings
        self._trained_context = trained_context or inspect.trained_context
        self.placements = placements if placements is not None else PlacementOverrides()
        self._runners: "collections.OrderedDict[str, ModelRunner]" = collections.OrderedDict()
        self._lock = threading.Lock()        # guards _runners and the request maps
        self._load_lock = threading.Lock()   # one load at a time: loads compete for the same memory
        self._loading: set[str] = set()
        self.requests = RequestBook(keep_finished=256)  # for /api/progress and /api/dismiss
        self.records = RequestLog()  # one record per request that ended, for metrics and alerts
        self._failed_loads: dict[str, tuple[float, str]] = {}  # name -> (monotonic time, error)
        self._closing = False
        self.schema_limits = SchemaLimits(settings.max_schema_depth, settings.max_schema_repetition,
                                          settings.max_grammar_bytes)

    # --- requests -----------------------------------------------------------------------------
    def resolve(self, model: Optional[str]) -> ModelSpec:
        """The spec for a model name; no name means the catalogue's first default candidate (the active model
        if one is set, else the smallest, never one whose inspection failed while another is usable) that
        has not failed to load; when every candidate has, the first (its load error is the answer)."""
        if model is None or model == "":
            first = None
            for spec in self.catalogue.candidates():
                if spec.name not in self._failed_loads:
                    return spec
                first = first or spec
            if first is None:
                raise ModelNotFoundError("(none available)")
            return first
        spec = self.catalogue.get(model)
        if spec is None:
            raise ModelNotFoundError(model)
        return spec

    def submit(self, request: GenerateRequest, request_id: str | None = None) -> Generation:
        """Validate, tokenize and queue a request; errors are raised here, before any output.
        Every request leaves one record: rejected here, or done / failed / cancelled when it ends."""
        started = time.monotonic()
        try:
            return self._submit(request, request_id)
        except EngineError as exc:
            self.records.append(request_id=request_id or "", dialect=request.dialect, endpoint=request.endpoint,
                                model=request.model or "", outcome="rejected", error_kind=exc.kind,
                                finish_reason=None, prompt_tokens=0, completion_tokens=0, cached_tokens=0,
                                queue_s=None, ttft_s=None, duration_s=time.monotonic() - started)
            raise

    def _submit(self, request: GenerateRequest, request_id: str | None) -> Generation:
        if self._closing:
            raise UnavailableError("server is shutting down")
        submitted = time.monotonic()
        spec = self.resolve(request.model)
        grammar = self.grammar_for(request.sampling)  # before loading: a bad schema costs no model load
        runner, load_s = self._runner_for(spec, request.num_ctx)
        model = runner.model
        prompt_ids = self._prompt_tokens(model, request)
        if not prompt_ids:  # nothing to evaluate means no logits to sample from: it would wait forever
            raise InvalidRequestError("the prompt has no tokens; send at least one", param="prompt")
        max_tokens = self._max_tokens(request, len(prompt_ids), model.facts.context_length)
        generation = Generation(request, spec.name, prompt_ids, max_tokens,
                                deadline=submitted + self.settings.request_timeout, request_id=request_id)
        generation.submitted_at = submitted
        generation.load_s = load_s
        generation.grammar = grammar
        self.requests.add(generation)  # first: a live request of the same id is refused before queueing
        generation.on_end = self._record_end  # before enqueue: a quick generation may end at once
        try:
            runner.enqueue(generation)
        except EngineError as exc:
            generation.on_end = None  # not an ending: submit() records the rejection
            generation.fail(exc)  # never left looking queued
            raise
        return generation

    def _record_end(self, generation: Generation) -> None:
        """The record of a generation the engine has let go of."""
        usage = generation.usage
        request = generation.request
        elapsed = time.monotonic() - generation.submitted_at
        ttft = usage.queue_s + usage.prompt_eval_s if usage and usage.completion_tokens else None
        self.records.append(
            request_id=generation.id, dialect=request.dialect, endpoint=request.endpoint, model=generation.model,
            outcome=generation.state, error_kind=generation.error.kind if generation.error else None,
            finish_reason=generation.finish_reason, prompt_tokens=len(generation.prompt_tokens),
            completion_tokens=generation.generated, cached_tokens=usage.cached_tokens if usage else 0,
            queue_s=usage.queue_s if usage else None, ttft_s=ttft,
            duration_s=usage.total_s if usage else elapsed)

    def grammar_for(self, sampling: SamplingParams) -> Optional[str]:
        """The checked GBNF grammar for a request's JSON schema (None without one); InvalidRequestError when
        the schema would cost more than the limits allow or llama.cpp cannot build its grammar."""
        schema, field = sampling.json_schema, sampling.schema_field
        if schema is None:
            return None
        check_schema(schema, self.schema_limits, field)
        grammar = self.backend.json_schema_grammar(schema, field)
        check_grammar_size(grammar, self.schema_limits, field)
        self.backend.check_grammar(grammar, field)
        return grammar

    def _prompt_tokens(self, model, request: GenerateRequest) -> list[int]:
        if request.messages is not None:
            facts = model.facts
            text = render_chat(request.messages, template=facts.chat_template, architecture=facts.architecture,
                               bos_token=facts.bos_text, eos_token=facts.eos_text)
            # A template that writes BOS itself must not get a second one from the tokenizer.
            add_special = not (facts.bos_text and text.startswith(facts.bos_text))
            return model.tokenize(text, add_special=add_special)
        if request.prompt_tokens is not None:
            vocab = model.facts.vocab_size
            bad = next((t for t in request.prompt_tokens if not 0 <= t < vocab), None)
            if bad is not None:
                raise InvalidRequestError(f"token id {bad} is outside the vocabulary (0..{vocab - 1})",
                                          param="prompt")
            return list(request.prompt_tokens)
        if request.prompt is None:
            raise InvalidRequestError("either a prompt or messages is required", param="prompt")
        return model.tokenize(request.prompt, add_special=request.add_special)

    def _max_tokens(self, request: GenerateRequest, prompt_tokens: int, model_context: int) -> int:
        context = min(request.num_ctx or model_context, model_context)
        room = context - prompt_tokens
        if room <= 0:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens. However, your prompt has "
                f"{prompt_tokens} tokens, which leaves no room for a completion.",
                prompt_tokens=prompt_tokens, context_length=context, max_tokens=request.max_tokens)
        if request.max_tokens is None:
            return room
        if request.max_tokens > room and request.cap_to_context:
            return room
        if request.max_tokens > room:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + request.max_tokens} tokens ({prompt_tokens} in the prompt, "
                f"{request.max_tokens} in the completion). Please reduce the prompt or the completion length.",
                prompt_tokens=prompt_tokens, context_length=context, max_tokens=request.max_tokens)
        return request.max_tokens

    def tokenize(self, model: Optional[str], text: str, add_special: bool = True) -> tuple[str, list[int]]:
        """(model name, token ids) for text, loading the model if needed."""
        spec = self.resolve(model)
        runner, _ = self._runner_for(spec)
        return spec.name, runner.model.tokenize(text, add_special=add_special)

    def detokenize(self, model: Optional[str], tokens: list[int]) -> str:
        """Text for token ids, loading the model if needed."""
        spec = self.resolve(model)
        runner, _ = self._runner_for(spec)
        vocab = runner.model.facts.vocab_size
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param="tokens")
        return runner.model.detokenize(tokens)

    def get_request(self, request_id: str) -> Optional[Generation]:
        """A current or recently finished request, for progress reporting."""
        return self.requests.get(request_id)

    def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request; False if there is no such live request."""
        return self.requests.cancel(request_id)

    def set_keep_alive(self, name: str, seconds: Optional[float]) -> None:
        """Keep a loaded model for `seconds` after its last use (None or negative: forever; 0: unload when idle)."""
        with self._lock:
            runner = self._runners.get(name)
        if runner is None:
            return
        runner.keep_alive_s = None if seconds is None or seconds < 0 else float(seconds)
        runner.last_used = time.monotonic()
        if seconds == 0:
            self.unload_expired()

    def unload_expired(self) -> list[str]:
        """Unload idle models whose keep-alive has run out; returns their names."""
        now = time.time()
        with self._lock:
            expired = [name for name, runner in self._runners.items()
                       if runner.idle and (runner.expires_at() or float("inf")) <= now]
            victims = [self._runners.pop(name) for name in expired]
        for runner in victims:
            log.info("keep-alive expired: unloading %s", runner.name)
            runner.stop()
        return expired

    def loaded_facts(self, name: str):
        """ModelFacts of a loaded model, or None when it is not loaded."""
        with self._lock:
            runner = self._runners.get(name)
        return runner.model.facts if runner else None

    # --- models -------------------------------------------------------------------------------
    def _runner_for(self, spec: ModelSpec, num_ctx: Optional[int] = None) -> tuple[ModelRunner, float]:
        """The loaded runner for a model, loading it (or reloading it, idle, for a larger num_ctx)."""
        wanted = self._wanted_context(spec, num_ctx)
        with self._lock:
            runner = self._runners.get(spec.name)
            if runner is not None and not self._too_small(runner, wanted):
                self._runners.move_to_end(spec.name)
                return runner, 0.0
        with self._load_lock:
            with self._lock:  # another thread may have loaded it while we waited
                runner = self._runners.get(spec.name)
                if runner is not None and not self._too_small(runner, wanted):
                    return runner, 0.0
                if runner is not None:  # idle and too small: Ollama reloads with the larger context
                    del self._runners[spec.name]
            if runner is not None:
                log.info("reloading %s with context %d", spec.name, wanted)
                runner.stop()
            failed = self._failed_loads.get(spec.name)
            if failed and time.monotonic() - failed[0] < self.settings.model_load_cooldown:
                # A broken model is not retried on every request: that would stall everyone behind the lock.
                raise ModelLoadError(failed[1])
            self._make_room()
            started = time.monotonic()
            self._loading.add(spec.name)
            try:
                model = self.backend.load(spec.path, self._load_options(spec, wanted))
            except Exception as exc:
                log.warning("loading %s failed: %s", spec.name, exc)
                message = f"failed to load model '{spec.name}': {exc}"
                self._failed_loads[spec.name] = (time.monotonic(), message)
                raise ModelLoadError(message) from None
            finally:
                self._loading.discard(spec.name)
            self._failed_loads.pop(spec.name, None)
            load_s = time.monotonic() - started
            runner = ModelRunner(spec.name, model, self.settings.max_queue, load_s)
            keep_alive = self.settings.default_keep_alive
            runner.keep_alive_s = None if keep_alive < 0 else keep_alive
            with self._lock:
                self._runners[spec.name] = runner
            log.info("loaded %s in %.2fs (context %d)", spec.name, load_s, model.facts.context_length)
            return runner, load_s

    def runtime_context(self, spec: ModelSpec) -> int:
        """The context window requests get now: the loaded one, else the default capped by the trained one."""
        facts = self.loaded_facts(spec.name)
        if facts is not None:
            return facts.context_length
        return self._wanted_context(spec, None)

    def _wanted_context(self, spec: ModelSpec, num_ctx: Optional[int]) -> int:
        trained = self._trained_context(spec.path) or self.settings.default_context_size
        return min(num_ctx or self.settings.default_context_size, trained)

    @staticmethod
    def _too_small(runner: ModelRunner, wanted: int) -> bool:
        """A loaded model reloads for a larger context only when nothing is running on it."""
        return runner.model.facts.context_length < wanted and runner.idle

    def _load_options(self, spec: ModelSpec, n_ctx: int) -> LoadOptions:
        s = self.settings
        placement = self.placements.get(spec.name)  # a plan applied through the weight-distribution API
        return LoadOptions(n_ctx=n_ctx, n_slots=s.parallel_slots, n_batch=s.batch_size,
                           n_threads=s.effective_threads,
                           n_gpu_layers=placement.gpu_layers if placement else s.gpu_layers,
                           split_mode=s.split_mode, main_gpu=s.main_gpu,
                           tensor_split=tuple(placement.tensor_split) if placement else s.tensor_split)

    def _make_room(self) -> None:
        """Unload least recently used idle models until one more fits under max_loaded_models."""
        while True:
            with self._lock:
                if len(self._runners) < self.settings.max_loaded_models:
                    return
                victim = next((name for name, r in self._runners.items() if r.idle), None)
                if victim is None:
                    raise BusyError("all loaded models are busy; cannot load another one now")
                runner = self._runners.pop(victim)
            log.info("unloading %s to make room", victim)
            runner.stop()

    def load(self, name: Optional[str] = None) -> ModelSpec:
        """Load a model (the smallest if unnamed) without generating."""
        spec = self.resolve(name)
        self._runner_for(spec)
        return spec

    def unload(self, name: str) -> bool:
        """Unload a model; True if it was loaded."""
        spec = self.resolve(name)
        with self._lock:
            runner = self._runners.pop(spec.name, None)
        if runner is None:
            return False
        runner.stop()
        return True

    # --- state --------------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return bool(self._loading)

    def snapshot(self) -> dict:
        """Read-only view of loaded models and request counts."""
        with self._lock:
            runners = list(self._runners.values())
        models = []
        running = waiting = 0
        for runner in runners:
            r, w = runner.counts()
            running, waiting = running + r, waiting + w
            facts = runner.model.facts
            models.append({"name": runner.name, "context_length": facts.context_length,
                           "trained_context": facts.trained_context, "loaded_at": runner.loaded_at,
                           "expires_at": runner.expires_at(), "running": r, "waiting": w})
        return {"models": models, "running": running, "waiting": waiting,
                "loading": sorted(self._loading), "closing": self._closing}

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work and unload every model."""
        self._closing = True
        with self._lock:
            runners, self._runners = list(self._runners.values()), collections.OrderedDict()
        for runner in runners:
            runner.stop(timeout)
        self.backend.close()
