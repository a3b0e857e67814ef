"""ModelPool: the loaded models — loading on demand, LRU eviction, failed-load cooldown, keep-alive, placement,
and hot reload (new settings: each loaded model is reloaded beside the old runner, which drains then stops)."""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable
from typing import Optional

from ollama_server.engine.backend import Backend
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.drafting import Speculation
from ollama_server.engine.placement import PlacementOverrides
from ollama_server.engine.runner import ModelRunner
from ollama_server.engine.snapshot import LoadedModelState
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import ModelLoadError
from ollama_server.models.catalogue import ModelSpec
from ollama_server.settings import Settings

log = logging.getLogger(__name__)
RETIRE_GRACE_S = 30.0  # beyond request_timeout, how long a replaced runner may take to finish its generations


class ModelPool:
    """Up to max_loaded_models ModelRunners by name; one load at a time."""

    def __init__(self, backend: Backend, settings: Settings, trained_context: Callable[[str], Optional[int]],
                 placements: PlacementOverrides | None = None,
                 broken_file: Callable[[ModelSpec], Optional[str]] | None = None):
        self.backend = backend
        self.settings = settings
        self._trained_context = trained_context
        # broken_file: why a model's file is known to be broken (the store's inspection), or None.
        self._broken_file = broken_file or (lambda spec: None)
        self.placements = placements if placements is not None else PlacementOverrides()
        self._runners: "collections.OrderedDict[str, ModelRunner]" = collections.OrderedDict()
        self._lock = threading.Lock()        # guards _runners
        self._load_lock = threading.Lock()   # one load at a time: loads compete for the same memory
        self._loading: set[str] = set()
        self._failed_loads: dict[str, tuple[float, str, type]] = {}  # name -> (monotonic time, error, its class)
        self._specs: dict[str, ModelSpec] = {}        # name -> spec of its last load, for reloads
        self._options: dict[str, LoadOptions] = {}    # name -> the options its loaded runner got
        self._changed = threading.Condition(self._lock)  # reload status changes
        self._generation = 0                          # configurations applied by reconfigure()
        self._reloads: dict[str, str] = {}            # name -> "reloading" | "ready" | "failed: ..."
        self._retiring: set[ModelRunner] = set()      # replaced runners finishing their generations

    @staticmethod
    def _load_error(kind: type, message: str) -> EngineError:
        """A fresh error for a failed load (a stored instance would grow its traceback on every raise)."""
        if kind is InvalidRequestError:
            return InvalidRequestError(message, param="model", code="model_file_broken")
        return ModelLoadError(message)

    def has_failed(self, name: str) -> bool:
        """True when the model's last load failed (it is skipped when a request names no model)."""
        return name in self._failed_loads

    def failed_loads(self) -> dict[str, dict]:
        """name -> {"error", "at" (Unix seconds), "retry_after_s" (0 once the cooldown is over)}; read-only."""
        now_mono, now = time.monotonic(), time.time()
        cooldown = self.settings.model_load_cooldown
        return {name: {"error": error, "at": now - (now_mono - failed_at),
                       "retry_after_s": round(max(0.0, cooldown - (now_mono - failed_at)), 1)}
                for name, (failed_at, error, _) in dict(self._failed_loads).items()}

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

    def runner_for(self, spec: ModelSpec, num_ctx: Optional[int] = None) -> tuple[ModelRunner, float]:
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
                raise self._load_error(failed[2], failed[1])
            self._make_room()
            started = time.monotonic()
            self._loading.add(spec.name)
            self._specs[spec.name] = spec
            options = self._load_options(spec, wanted)
            try:
                model = self.backend.load(spec.path, options)
            except Exception as exc:
                log.warning("loading %s failed: %s", spec.name, exc)
                broken = self._broken_file(spec)
                # A file already known broken is the request's problem (name another model), not the server's.
                kind = InvalidRequestError if broken else ModelLoadError
                message = (f"model '{spec.name}' cannot be loaded: its file is broken ({broken})" if broken
                           else f"failed to load model '{spec.name}': {exc}")
                self._failed_loads[spec.name] = (time.monotonic(), message, kind)
                raise self._load_error(kind, message) from None
            finally:
                self._loading.discard(spec.name)
            self._failed_loads.pop(spec.name, None)
            load_s = time.monotonic() - started
            runner = ModelRunner(spec.name, model, self.settings.max_queue, load_s,
                                 speculation=self._speculation(model, options),
                                 reproducible_greedy=self.settings.reproducible_greedy)
            runner.background_every = self.settings.background_every
            keep_alive = self.settings.default_keep_alive
            runner.keep_alive_s = None if keep_alive < 0 else keep_alive
            with self._lock:
                self._runners[spec.name] = runner
                self._options[spec.name] = options
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

    def _speculation(self, model, options: LoadOptions) -> Speculation:
        """How a loaded model drafts: off, by prompt lookup, or with the draft model (loaded beside it)."""
        s = self.settings
        if not s.speculative_decoding:
            return Speculation(enabled=False)
        drafter = None
        load_draft = getattr(self.backend, "load_draft", None)
        if s.draft_model and load_draft is not None:
            try:
                drafter = load_draft(s.draft_model, options)
            except Exception as exc:  # a bad draft model costs the speed-up, never the service
                log.warning("draft model %s not used: %s", s.draft_model, exc)
            else:
                if drafter.vocab_size != model.facts.vocab_size:
                    log.warning("draft model %s not used: its vocabulary (%d tokens) differs from the model's (%d)",
                                s.draft_model, drafter.vocab_size, model.facts.vocab_size)
                    drafter.close()
                    drafter = None
        return Speculation(enabled=True, max_slots=s.speculative_max_slots, drafter=drafter,
                           costs=getattr(model, "step_costs", None))

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

    def unload(self, name: str) -> bool:
        """Unload a model; True if it was loaded."""
        with self._lock:
            runner = self._runners.pop(name, None)
        if runner is None:
            return False
        runner.stop()
        return True

    @property
    def loading(self) -> list[str]:
        """Names of the models being loaded now."""
        return sorted(self._loading)

    def states(self) -> tuple[LoadedModelState, ...]:
        """What each loaded model is doing, for snapshots."""
        with self._lock:
            runners = list(self._runners.values())
        states = []
        for runner in runners:
            running, waiting = runner.counts()
            facts = runner.model.facts
            states.append(LoadedModelState(name=runner.name, context_length=facts.context_length,
                                           trained_context=facts.trained_context, loaded_at=runner.loaded_at,
                                           expires_at=runner.expires_at(), running=running, waiting=waiting))
        return tuple(states)

    def close(self, timeout: float = 10.0) -> None:
        """Unload every model (replaced runners still draining included)."""
        with self._lock:
            runners, self._runners = list(self._runners.values()), collections.OrderedDict()
            runners += list(self._retiring)
        for runner in runners:
            runner.stop(timeout)

    # --- hot reload ---------------------------------------------------------------------------
    def reconfigure(self, settings: Settings) -> int:
        """Use `settings` from now on and reload every loaded (or loading) model in the background;
        returns the configuration's generation number."""
        with self._lock:
            self.settings = settings
            self._generation += 1
            generation = self._generation
            names = list(self._runners) + sorted(self._loading - set(self._runners))
            self._reloads = {name: "reloading" for name in names}
            self._changed.notify_all()
        for name in names:
            threading.Thread(target=self._reload, args=(name, generation), name=f"reload-{name}",
                             daemon=True).start()
        return generation

    def reload_status(self) -> dict:
        """{"state": "idle" | "reloading", "models": {name: "reloading" | "ready" | "failed: ..."}, "generation"}."""
        with self._lock:
            models = dict(self._reloads)
            generation = self._generation
        state = "reloading" if "reloading" in models.values() else "idle"
        return {"state": state, "models": models, "generation": generation}

    def wait_for_reload(self, timeout: float) -> bool:
        """Block until no model is reloading (True), or `timeout` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: "reloading" not in self._reloads.values(), timeout)

    def _reload(self, name: str, generation: int) -> None:
        """Load `name` anew beside its runner, swap them, then let the old one drain; a failure keeps the old."""
        with self._load_lock:  # loads compete for the same memory, reloads included
            with self._lock:
                if generation != self._generation:
                    return  # a newer configuration has its own reload of this model
                old, spec = self._runners.get(name), self._specs.get(name)
            if old is None or spec is None:
                self._set_status(generation, name, None)  # unloaded meanwhile: nothing to reload
                return
            options = self._load_options(spec, self._wanted_context(spec, None))
            if options == self._options.get(name):
                self._set_status(generation, name, "ready")  # nothing it was loaded with has changed
                return
            started = time.monotonic()
            try:
                model = self.backend.load(spec.path, options)
            except Exception as exc:  # the old runner keeps serving
                log.warning("reloading %s failed, the running instance stays: %s", name, exc)
                self._set_status(generation, name, f"failed: {exc}")
                return
            runner = ModelRunner(name, model, self.settings.max_queue, time.monotonic() - started,
                                 speculation=self._speculation(model, options),
                                 reproducible_greedy=self.settings.reproducible_greedy)
            runner.background_every = self.settings.background_every
            runner.keep_alive_s = old.keep_alive_s
            with self._lock:
                swapped = self._runners.get(name) is old
                if swapped:  # assigning an existing key keeps its LRU position
                    self._runners[name] = runner
                    self._options[name] = options
                    self._retiring.add(old)
        if not swapped:  # unloaded while loading: the user's unload wins
            runner.stop()
            self._set_status(generation, name, None)
            return
        log.info("reloaded %s (context %d); the previous instance drains", name, model.facts.context_length)
        self._set_status(generation, name, "ready")
        old.retire(self.settings.request_timeout + RETIRE_GRACE_S)
        with self._lock:
            self._retiring.discard(old)

    def _set_status(self, generation: int, name: str, status: Optional[str]) -> None:
        """Record a reload's outcome unless a newer configuration has taken over (None: forget the model)."""
        with self._lock:
            if generation != self._generation:
                return
            if status is None:
                self._reloads.pop(name, None)
            else:
                self._reloads[name] = status
            self._changed.notify_all()
