"""ModelRunner: one loaded model, its wait queue, and the engine thread that decodes for it."""
from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import replace

from ollama_server.engine.backend import LoadedModel
from ollama_server.engine.generation import Generation
from ollama_server.engine.text_stream import StopMatcher
from ollama_server.engine.text_stream import Utf8Assembler
from ollama_server.engine.thinking import ThinkSplitter
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import Usage

log = logging.getLogger(__name__)


class ModelRunner:
    """Serves the generations queued for one model, one at a time, on its own thread."""

    def __init__(self, name: str, model: LoadedModel, max_queue: int, load_s: float = 0.0):
        self.name = name
        self.model = model
        self.max_queue = max_queue
        self.load_s = load_s
        self.loaded_at = time.time()
        self.last_used = time.monotonic()
        self.keep_alive_s: float | None = None  # None: forever; else unload this long after last use
        self._waiting: collections.deque[Generation] = collections.deque()
        self._running: Generation | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # --- admission ----------------------------------------------------------------------------
    def enqueue(self, generation: Generation) -> None:
        """Queue a generation, or raise BusyError at once when the wait queue is full."""
        with self._cond:
            if self._stopping:
                raise BusyError("model is unloading, please try again")
            # Capacity is the one running slot plus max_queue waiting (counted together, so a
            # request not yet picked up by the engine thread still counts once).
            in_system = (1 if self._running is not None else 0) + len(self._waiting)
            if in_system >= 1 + self.max_queue:
                raise BusyError()
            self._waiting.append(generation)
            self.last_used = time.monotonic()
            self._cond.notify()

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._running is None and not self._waiting

    def expires_at(self) -> float | None:
        """Wall-clock time after which an idle model may be unloaded (None: never)."""
        if self.keep_alive_s is None:
            return None
        return time.time() + (self.last_used + self.keep_alive_s - time.monotonic())

    def counts(self) -> tuple[int, int]:
        """(running, waiting) request counts."""
        with self._cond:
            return (1 if self._running else 0), len(self._waiting)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel queued work, let the running request see cancellation, free the model."""
        with self._cond:
            self._stopping = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            if self._running:
                self._running.cancel()
            self._cond.notify_all()
        for generation in waiting:
            generation.fail(BusyError("model was unloaded before the request started"))
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.model.close()

    # --- the engine thread --------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                generation = self._waiting.popleft()
                self._running = generation
            try:
                self._run(generation)
            except EngineError as exc:
                generation.fail(exc)
            except Exception as exc:  # a backend fault must not kill the thread or hang the caller
                log.exception("generation %s failed", generation.id)
                generation.fail(EngineError(f"generation failed: {exc}"))
            finally:
                with self._cond:
                    self._running = None
                    self.last_used = time.monotonic()

    def _run(self, generation: Generation) -> None:
        if generation.cancelled:
            generation.finish("cancelled")
            return
        started = time.monotonic()
        generation.started_at = started
        generation.state = "running"
        request = generation.request
        sampling = request.sampling
        # KV reuse changes batch shapes and so the last bits of the logits (llama-server documents the
        # same for cache_prompt): requests that promise reproducibility evaluate their prompt afresh.
        reuse_prefix = sampling.seed is None and sampling.temperature > 0
        if sampling.seed is None:
            sampling = replace(sampling, seed=random.randrange(2**31))
        text_out = _TextPipeline(request)
        stop_ids = set(request.stop_token_ids)
        first_token_at = None
        finish_reason, stop_kind, stop_match = "length", "length", None
        cached = self.model.cached_prefix(generation.prompt_tokens) if reuse_prefix else 0

        def eog_banned() -> bool:
            return request.ignore_eos or generation.generated < request.min_tokens

        # The ban costs a pass over the whole vocabulary per token: only requests that need it pay.
        needs_ban = request.ignore_eos or request.min_tokens > 0
        tokens = self.model.generate(generation.prompt_tokens, sampling,
                                     ban_end_of_generation=eog_banned if needs_ban else None,
                                     reuse_prefix=reuse_prefix)
        try:
            for token in tokens:
                now = time.monotonic()
                if first_token_at is None:
                    first_token_at = now
                if generation.cancelled:
                    finish_reason = stop_kind = "cancelled"
                    break
                if now > generation.deadline:
                    raise RequestTimeoutError("request timed out during generation")
                if self.model.is_end_of_generation(token):
                    finish_reason, stop_kind = "stop", "eos"
                    break
                generation.generated += 1
                logprobs = ()
                if request.logprobs is not None:
                    logprobs = (self.model.logprobs(token, request.logprobs),)
                reasoning, text = text_out.feed(self.model.token_bytes(token))
                chunk = Chunk(text=text, reasoning=reasoning, token_ids=(token,), logprobs=logprobs)
                # Every token is a chunk, even when its text is held back (TGI streams per token).
                generation.put(chunk)
                if text_out.matched is not None:
                    finish_reason, stop_kind, stop_match = "stop", "stop_sequence", text_out.matched
                    break
                if token in stop_ids and generation.generated >= request.min_tokens:
                    finish_reason, stop_kind, stop_match = "stop", "stop_sequence", token
                    break
                if generation.generated >= generation.max_tokens:
                    break
        finally:
            tokens.close()
        reasoning, tail = text_out.finish()
        ended = time.monotonic()
        first = first_token_at or ended
        usage = Usage(
            prompt_tokens=len(generation.prompt_tokens),
            completion_tokens=generation.generated,
            cached_tokens=cached,
            queue_s=started - generation.submitted_at,
            load_s=generation.load_s,
            prompt_eval_s=first - started,
            eval_s=ended - first,
            total_s=ended - generation.submitted_at,
        )
        generation.put(Chunk(text=tail, reasoning=reasoning, finish_reason=finish_reason, stop_kind=stop_kind,
                             stop_match=stop_match, usage=usage, seed=sampling.seed))
        generation.finish("cancelled" if finish_reason == "cancelled" else "done")


class _TextPipeline:
    """Token bytes -> UTF-8 text -> stop strings -> reasoning/content split, in that order."""

    def __init__(self, request):
        self._utf8 = Utf8Assembler()
        self._stops = StopMatcher(request.stop)
        self._think = ThinkSplitter() if request.split_thinking else None
        self._include_stop = request.include_stop_str
        self.matched: str | None = None

    def feed(self, piece: bytes) -> tuple[str, str]:
        text = self._stops.feed(self._utf8.feed(piece))
        if self._stops.matched is not None:
            self.matched = self._stops.matched
            if self._include_stop:
                text += self.matched
        return self._split(text)

    def finish(self) -> tuple[str, str]:
        """What is still held back, once the generation is over."""
        if self.matched is not None:
            text = ""
        else:
            text = self._stops.feed(self._utf8.flush()) + self._stops.flush()
        reasoning, content = self._split(text)
        if self._think is not None:
            more_reasoning, more_content = self._think.flush()
            reasoning, content = reasoning + more_reasoning, content + more_content
        return reasoning, content

    def _split(self, text: str) -> tuple[str, str]:
        if self._think is None:
            return "", text
        return self._think.feed(text)
