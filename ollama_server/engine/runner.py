"""ModelRunner: one loaded model, its wait queue, and the engine thread that batches its slots.

Each step builds one batch: a decode token for every running slot, then prompt chunks for slots
still reading their prompt. New requests join at the next step; finished ones leave at once.
"""
from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import replace

from ollama_server.engine.backend import DecodeEntry
from ollama_server.engine.backend import LoadedModel
from ollama_server.engine.generation import Generation
from ollama_server.engine.slot import Slot
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import Usage

log = logging.getLogger(__name__)
PREFILL_CHUNK = 256  # prompt tokens per slot per step: bounds how long a new prompt pauses running streams


class RetiredError(BusyError):
    """The runner was replaced by a reloaded one: the engine resubmits to the pool's current runner."""


class ModelRunner:
    """Serves the generations queued for one model, `n_slots` at a time, on its own thread."""

    def __init__(self, name: str, model: LoadedModel, max_queue: int, load_s: float = 0.0):
        self.name = name
        self.model = model
        self.max_queue = max_queue
        self.load_s = load_s
        self.loaded_at = time.time()
        self.last_used = time.monotonic()
        self.keep_alive_s: float | None = None  # None: forever; else unload this long after last use
        self.slots = [Slot(seq) for seq in range(model.n_slots)]
        self._waiting: collections.deque[Generation] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._retiring = False  # replaced by a reload: no new work, the work in flight finishes
        self._thread = threading.Thread(target=self._work, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # --- admission ----------------------------------------------------------------------------
    def enqueue(self, generation: Generation) -> None:
        """Queue a generation, or raise BusyError at once when slots and wait queue are full."""
        with self._cond:
            if self._retiring:
                raise RetiredError("model is being reloaded, please try again")
            if self._stopping:
                raise BusyError("model is unloading, please try again")
            # A request not yet picked up by the engine thread counts once, as waiting.
            if self._active_count() + len(self._waiting) >= len(self.slots) + self.max_queue:
                raise BusyError()
            self._waiting.append(generation)
            self.last_used = time.monotonic()
            self._cond.notify()

    def _active_count(self) -> int:
        return sum(1 for slot in self.slots if slot.busy)

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._active_count() == 0 and not self._waiting

    def expires_at(self) -> float | None:
        """Wall-clock time after which an idle model may be unloaded (None: never)."""
        if self.keep_alive_s is None:
            return None
        return time.time() + (self.last_used + self.keep_alive_s - time.monotonic())

    def counts(self) -> tuple[int, int]:
        """(running, waiting) request counts."""
        with self._cond:
            return self._active_count(), len(self._waiting)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel queued work, stop running work at the next step, free the model."""
        with self._cond:
            self._stopping = True
            waiting, self._waiting = list(self._waiting), collections.deque()
            self._cond.notify_all()
        for generation in waiting:
            generation.fail(BusyError("model was unloaded before the request started"))
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.model.close()

    def retire(self, timeout: float) -> None:
        """Drain then stop: refuse new work, let queued and running generations finish, then free the model;
        whatever still runs after `timeout` seconds is stopped as by stop()."""
        with self._cond:
            self._retiring = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: generations still running %.0fs after a reload; stopping them", self.name, timeout)
        self.stop()

    # --- the engine thread --------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiting and self._active_count() == 0:
                    if self._retiring:
                        break  # drained: nothing queued, nothing running
                    self._cond.wait()
                if self._stopping or (self._retiring and not self._waiting and self._active_count() == 0):
                    break
                self._drop_cancelled_waiting()
                # Admission under the lock: a request thread must never see a popped request as neither
                # waiting nor running (it would let one more in past the capacity).
                for generation in self._take_admissible():
                    self._admit(generation)
            try:
                self._step()
            except Exception as exc:  # a backend fault fails the requests in flight, never the thread
                log.exception("decode step failed on %s", self.name)
                error = exc if isinstance(exc, EngineError) else EngineError(f"generation failed: {exc}")
                for slot in self.slots:
                    if slot.busy:
                        self._release(slot, error=error)
        for slot in self.slots:
            if slot.busy:
                self._release(slot, error=BusyError("model was unloaded while the request ran"))

    def _drop_cancelled_waiting(self) -> None:
        """End queued requests whose client left or that were dismissed, without waiting for a slot."""
        if any(generation.cancelled for generation in self._waiting):
            kept = collections.deque()
            for generation in self._waiting:
                if generation.cancelled:
                    _end_unstarted(generation)
                else:
                    kept.append(generation)
            self._waiting = kept

    def _take_admissible(self) -> list[Generation]:
        free = sum(1 for slot in self.slots if not slot.busy)
        taken = []
        while self._waiting and len(taken) < free:
            taken.append(self._waiting.popleft())
        return taken

    def _admit(self, generation: Generation) -> None:
        if generation.cancelled:
            _end_unstarted(generation)
            return
        if time.monotonic() > generation.deadline:
            generation.fail(RequestTimeoutError("request timed out while waiting for a slot"))
            return
        sampling = generation.request.sampling
        # KV reuse changes batch shapes and so the last bits of the logits (llama-server documents the
        # same for cache_prompt): requests that promise reproducibility evaluate their prompt afresh.
        reuse = sampling.seed is None and sampling.temperature > 0
        if sampling.seed is None:
            sampling = replace(sampling, seed=random.randrange(2**31))
        slot = self._choose_slot(generation.prompt_tokens, reuse)
        try:
            sampler = self.model.new_sampler(sampling, generation.prompt_tokens, generation.request.min_tokens,
                                             generation.request.ignore_eos, generation.grammar)
        except EngineError as exc:
            generation.fail(exc)
            return
        prefix = slot.common_prefix(generation.prompt_tokens) if reuse else 0
        prefix = min(prefix, len(generation.prompt_tokens) - 1)  # the last prompt token gives the first logits
        if prefix < len(slot.cached) and not self.model.forget(slot.seq, prefix):
            self.model.forget(slot.seq, 0)  # cannot cut there: drop the whole sequence (never fails)
            prefix = 0
        if prefix == 0 and slot.cached:
            self.model.forget(slot.seq, 0)
        slot.start(generation, sampler, sampling.seed, prefix)

    def _choose_slot(self, prompt: list[int], reuse: bool) -> Slot:
        free = [slot for slot in self.slots if not slot.busy]
        if reuse:
            return max(free, key=lambda slot: (slot.common_prefix(prompt), -len(slot.cached)))
        return min(free, key=lambda slot: len(slot.cached))

    def _step(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.busy and slot.generation.cancelled:
                self._release(slot, finish_reason="cancelled")
            elif slot.busy and now > slot.generation.deadline:
                self._release(slot, error=RequestTimeoutError("request timed out during generation"))
        entries, owners = [], []
        budget = self.model.batch_capacity
        for slot in self.slots:
            if slot.busy and slot.next_token is not None:
                entries.append(DecodeEntry(slot.seq, (slot.next_token,), len(slot.cached), True))
                owners.append(slot)
                budget -= 1
        for slot in self.slots:
            if slot.busy and slot.pending and budget > 0:
                size = min(len(slot.pending), budget, PREFILL_CHUNK)
                chunk = slot.pending[:size]
                entries.append(DecodeEntry(slot.seq, chunk, len(slot.cached), size == len(slot.pending)))
                owners.append(slot)
                budget -= size
        if not entries:
            return
        rows = self.model.decode(entries)
        for entry, slot in zip(entries, owners):
            slot.fed(entry.tokens)
        for row, slot in zip(rows, owners):
            if row is not None:
                self._advance(slot, row)
        self.last_used = time.monotonic()

    def _advance(self, slot: Slot, row: int) -> None:
        """Sample a slot's next token from its logits row, emit it, and decide whether it is done."""
        generation = slot.generation
        request = generation.request
        token = self.model.sample(slot.sampler, row, generation.generated, request.min_tokens)
        slot.mark_first_token()
        if self.model.is_end_of_generation(token):
            self._release(slot, finish_reason="stop", stop_kind="eos")
            return
        generation.generated += 1
        logprobs = (self.model.logprobs(row, token, request.logprobs),) if request.logprobs is not None else ()
        chunk = slot.emit(self.model.token_bytes(token), token, logprobs)
        generation.put(chunk)
        if slot.text.matched is not None:
            self._release(slot, finish_reason="stop", stop_kind="stop_sequence", stop_match=slot.text.matched)
        elif token in request.stop_token_ids and generation.generated >= request.min_tokens:
            self._release(slot, finish_reason="stop", stop_kind="stop_sequence", stop_match=token)
        elif generation.generated >= generation.max_tokens:
            self._release(slot, finish_reason="length", stop_kind="length")
        elif len(slot.cached) + 1 >= self.model.facts.context_length:
            self._release(slot, finish_reason="length", stop_kind="length")  # the slot's context is full
        else:
            slot.next_token = token

    def _release(self, slot: Slot, finish_reason: str = "stop", stop_kind: str | None = None,
                 stop_match=None, error: EngineError | None = None) -> None:
        """End a slot's generation (final chunk or error) and free the slot; its KV stays for reuse."""
        generation = slot.generation
        if error is not None:
            generation.fail(error)
        else:
            generation.put(slot.final_chunk(finish_reason, stop_kind or finish_reason, stop_match))
            generation.finish("cancelled" if finish_reason == "cancelled" else "done")
        slot.clear()
        with self._cond:
            self._cond.notify_all()


def _end_unstarted(generation: Generation) -> None:
    """End a request cancelled before it got a slot: a final chunk says so, as for a running one."""
    waited = time.monotonic() - generation.submitted_at
    usage = Usage(prompt_tokens=len(generation.prompt_tokens), queue_s=waited, load_s=generation.load_s,
                  total_s=waited)
    generation.put(Chunk(finish_reason="cancelled", stop_kind="cancelled", usage=usage))
    generation.finish("cancelled")
