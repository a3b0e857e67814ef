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
from ollama_server.engine.drafting import DraftController
from ollama_server.engine.drafting import Speculation
from ollama_server.engine.drafting import StepCosts
from ollama_server.engine.generation import Generation
from ollama_server.engine.prefix_sharing import chunk_limit
from ollama_server.engine.prefix_sharing import find_donor
from ollama_server.engine.prefix_sharing import known_prefix
from ollama_server.engine.slot import Slot
from ollama_server.engine.step_profile import StepProfile
from ollama_server.engine.step_profile import lone_decode_rows
from ollama_server.engine.step_profile import reading_any
from ollama_server.engine.types import BusyError
from ollama_server.engine.types import Chunk
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import RequestTimeoutError
from ollama_server.engine.types import Usage

log = logging.getLogger(__name__)
PREFILL_CHUNK = 256  # prompt tokens per slot per step: bounds how long a new prompt pauses running streams
# While interactive requests run, background ones (jobs) join one step in this many (the background_every
# setting): on a CPU every row of a step costs, on a GPU nearly nothing.
BACKGROUND_EVERY = 4


class RetiredError(BusyError):
    """The runner was replaced by a reloaded one: the engine resubmits to the pool's current runner."""


class ModelRunner:
    """Serves the generations queued for one model, `n_slots` at a time, on its own thread."""

    def __init__(self, name: str, model: LoadedModel, max_queue: int, load_s: float = 0.0,
                 speculation: Speculation | None = None, reproducible_greedy: bool = True):
        self.name = name
        self.model = model
        self.max_queue = max_queue
        self.load_s = load_s
        self.loaded_at = time.time()
        self.last_used = time.monotonic()
        self.keep_alive_s: float | None = None  # None: forever; else unload this long after last use
        self.slots = [Slot(seq) for seq in range(model.n_slots)]
        self.reproducible_greedy = reproducible_greedy
        rollback = getattr(model, "supports_rollback", True)
        self.speculation = speculation if speculation is not None and rollback else Speculation(enabled=False)
        self._supports_sharing = rollback and hasattr(model, "copy_sequence")
        self.draft_tokens = 0           # drafted and verified, all requests (speculative decoding)
        self.accepted_draft_tokens = 0  # ... of which kept
        self.shared_prefix_tokens = 0   # prompt tokens copied from another slot instead of evaluated
        self.profile = StepProfile()
        self._steps = 0  # counts steps for background_every
        self.background_every = BACKGROUND_EVERY
        self.step_costs = self.speculation.costs or StepCosts()  # what a step with a draft costs here
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
            if self.speculation.drafter is not None:
                self.speculation.drafter.close()

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
        """Waiting generations for the free slots: interactive ones before background (jobs'), FIFO in each."""
        free = sum(1 for slot in self.slots if not slot.busy)
        if not free or not self._waiting:  # the usual case mid-generation: called once per step
            return []
        # sorted() is stable: the queue's order holds within each class.
        taken = sorted(self._waiting, key=lambda generation: generation.request.background)[:free]
        chosen = {id(generation) for generation in taken}
        self._waiting = collections.deque(g for g in self._waiting if id(g) not in chosen)
        return taken

    def _admit(self, generation: Generation) -> None:
        if generation.cancelled:
            _end_unstarted(generation)
            return
        if time.monotonic() > generation.deadline:
            generation.fail(RequestTimeoutError("request timed out while waiting for a slot"))
            return
        sampling = generation.request.sampling
        prompt = generation.prompt_tokens
        # KV reuse and drafts change batch shapes, and llama.cpp's CPU kernels give a token slightly different
        # logits in another batch shape (llama-server documents the same for cache_prompt): requests that
        # promise reproducibility (seeded; greedy unless reproducible_greedy is off) read their prompt afresh,
        # one chunk schedule, and decode one token per step.
        reuse = sampling.seed is None and (sampling.temperature > 0 or not self.reproducible_greedy)
        if sampling.seed is None:
            sampling = replace(sampling, seed=random.randrange(2**31))
        slot = self._choose_slot(prompt, reuse)
        try:
            sampler = self.model.new_sampler(sampling, prompt, generation.request.min_tokens,
                                             generation.request.ignore_eos, generation.grammar)
        except EngineError as exc:
            generation.fail(exc)
            return
        prefix = min(slot.common_prefix(prompt), len(prompt) - 1) if reuse else 0  # the last token gives logits
        if prefix and not self._can_continue(slot.seq, prefix):
            prefix = 0  # its sliding window has moved past the prefix
        if prefix < len(slot.cached) and not self.model.forget(slot.seq, prefix):
            self.model.forget(slot.seq, 0)  # cannot cut there: drop the whole sequence (never fails)
            prefix = 0
        if prefix == 0 and slot.cached:
            self.model.forget(slot.seq, 0)
        drafts = None
        can_draft = getattr(self.model, "can_draft", None)
        if self.speculation.enabled and reuse and can_draft is not None and can_draft(sampler):
            drafts = DraftController(prompt, enabled=True)
        slot.start(generation, sampler, sampling.seed, prefix, drafts)
        if reuse and self._supports_sharing:
            donor, length = find_donor(self.slots, slot, prompt, prefix)
            if donor is not None:
                slot.wait_for(donor, length)  # copied at the next step once the donor holds the prefix
                self._share_prefix(slot)

    def _can_continue(self, seq: int, at: int) -> bool:
        check = getattr(self.model, "can_continue", None)
        return check(seq, at) if check is not None else True

    def _share_prefix(self, slot: Slot) -> None:
        """Copy a waiting slot's prefix from its donor once the donor holds it; give up when it never will."""
        donor, length = slot.donor, slot.shared_length
        prompt = slot.generation.prompt_tokens
        if len(donor.cached) >= length and donor.cached[:length] == prompt[:length]:
            if self._can_continue(donor.seq, length):
                self.model.copy_sequence(donor.seq, slot.seq)
                self.model.forget(slot.seq, length)
                slot.copied(prompt[:length])
                self.shared_prefix_tokens += length
            else:
                slot.donor = None
        elif known_prefix(donor, prompt) < length:
            slot.donor = None  # the donor moved on to other work: read the prompt here

    def _choose_slot(self, prompt: list[int], reuse: bool) -> Slot:
        free = [slot for slot in self.slots if not slot.busy]
        if reuse:
            return max(free, key=lambda slot: (slot.common_prefix(prompt), -len(slot.cached)))
        return min(free, key=lambda slot: len(slot.cached))

    def _step(self) -> None:
        step_started = time.perf_counter()
        now = time.monotonic()
        for slot in self.slots:
            if slot.busy and slot.generation.cancelled:
                self._release(slot, finish_reason="cancelled")
            elif slot.busy and now > slot.generation.deadline:
                self._release(slot, error=RequestTimeoutError("request timed out during generation"))
            elif slot.busy and slot.donor is not None:
                self._share_prefix(slot)
        entries, owners = [], []
        budget = self.model.batch_capacity
        self._steps += 1
        stepping = [slot for slot in self.slots if slot.busy]
        if self._steps % self.background_every and any(not slot.generation.request.background for slot in stepping):
            stepping = [slot for slot in stepping if not slot.generation.request.background]
        decoding = [slot for slot in stepping if slot.next_token is not None]
        budget -= len(decoding)
        drafting = self.speculation.enabled and len(decoding) <= self.speculation.max_slots
        if drafting and len(decoding) == 1 and not reading_any(self.slots) and self.step_costs.wants_baseline():
            drafting = False  # a lone undrafted step now and then: what drafts cost is judged against it
        for slot in decoding:
            draft = self._draft(slot, budget) if drafting and slot.drafts is not None else []
            budget -= len(draft)
            entries.append(DecodeEntry(slot.seq, (slot.next_token, *draft), len(slot.cached), True,
                                       all_logits=bool(draft)))
            owners.append(slot)
        reading = [slot for slot in stepping if slot.pending and slot.donor is None]
        reading.sort(key=lambda slot: chunk_limit(slot, self.slots) is None)  # donors first: others wait on them
        for slot in reading:
            if budget <= 0:
                break
            size = min(len(slot.pending), budget, PREFILL_CHUNK)
            limit = chunk_limit(slot, self.slots)
            if limit is not None:
                size = min(size, limit)  # stop where a waiting slot will copy the cells
            chunk = slot.pending[:size]
            entries.append(DecodeEntry(slot.seq, chunk, len(slot.cached), size == len(slot.pending)))
            owners.append(slot)
            budget -= size
        if not entries:
            return
        lone_rows = lone_decode_rows(entries)
        decode_started = time.perf_counter()
        rows = self.model.decode(entries)
        decoded = time.perf_counter()
        for entry, slot in zip(entries, owners):
            slot.fed(entry.tokens)
        for row, entry, slot in zip(rows, entries, owners):
            if row is not None:
                self._advance(slot, row, entry)
        self.last_used = time.monotonic()
        self.profile.add(decode_started - step_started, decoded - decode_started, time.perf_counter() - decoded)
        if lone_rows:
            self.step_costs.add(lone_rows, decoded - decode_started)

    def _draft(self, slot: Slot, budget: int) -> list[int]:
        """Draft tokens to verify with this slot's next token (speculative decoding), within the batch budget."""
        generation = slot.generation
        room = min(budget, generation.max_tokens - generation.generated - 1,
                   self.model.facts.context_length - len(slot.cached) - 2)
        return slot.drafts.propose(room, self.speculation.drafter, slot.seq, self.step_costs)

    def _advance(self, slot: Slot, row: int, entry: DecodeEntry) -> None:
        """Sample from the entry's logits rows: verify its draft tokens in order (each kept is emitted), then
        the first token that differs from the draft, or the one after a fully kept draft, is the next token."""
        draft = tuple(entry.tokens[1:]) if entry.all_logits else ()
        first_row = row - len(draft)
        start = entry.start_pos
        request = slot.generation.request
        drafts = slot.drafts
        slot.drafted += len(draft)  # counted before any emission: a final chunk reports them
        kept = 0
        for index in range(len(draft) + 1):
            guess = draft[index] if index < len(draft) else None
            token = self.model.sample(slot.sampler, first_row + index, slot.generation.generated,
                                      request.min_tokens, draft=guess)
            if token == guess:
                kept += 1
                slot.accepted += 1
            # Tokens in the sequence before this one: a prompt chunk's, or the fed token and the kept drafts.
            before = start + len(entry.tokens) - len(draft) + index
            going = self._emit(slot, token, first_row + index, cached=before)
            if token != guess:
                if going:
                    slot.next_token = token
                break
            if not going:
                break
        if draft:
            self.draft_tokens += len(draft)
            self.accepted_draft_tokens += kept
            if drafts is not None:
                drafts.judge(len(draft), kept)
            valid = start + 1 + kept  # the token fed before the draft, and the draft tokens kept
            if len(slot.cached) > valid:
                if not self.model.forget(slot.seq, valid):
                    raise EngineError("could not drop the rejected draft tokens from the cache")
                del slot.cached[valid:]

    def _emit(self, slot: Slot, token: int, row: int, cached: int) -> bool:
        """Emit one sampled token (`cached`: tokens in the sequence before it); False once the slot is done."""
        generation = slot.generation
        request = generation.request
        slot.mark_first_token()
        if self.model.is_end_of_generation(token):
            self._release(slot, finish_reason="stop", stop_kind="eos")
            return False
        generation.generated += 1
        if slot.drafts is not None:
            slot.drafts.append(token)
        logprobs = (self.model.logprobs(row, token, request.logprobs),) if request.logprobs is not None else ()
        chunk = slot.emit(self.model.token_bytes(token), token, logprobs)
        generation.put(chunk)
        if slot.text.matched is not None:
            self._release(slot, finish_reason="stop", stop_kind="stop_sequence", stop_match=slot.text.matched)
        elif token in request.stop_token_ids and generation.generated >= request.min_tokens:
            self._release(slot, finish_reason="stop", stop_kind="stop_sequence", stop_match=token)
        elif generation.generated >= generation.max_tokens:
            self._release(slot, finish_reason="length", stop_kind="length")
        elif cached + 1 >= self.model.facts.context_length:
            self._release(slot, finish_reason="length", stop_kind="length")  # the slot's context is full
        else:
            return True
        return False

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
