"""LlamaScorer: log-likelihoods of given tokens, on a llama.cpp context of its own beside the generation context."""
from __future__ import annotations

import threading
from typing import Iterator
from typing import Optional
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from ollama_server.engine.types import EngineError

# Logits rows one decode may ask for: llama.cpp keeps an n_vocab-float buffer per row (1 MiB each for Gemma's
# 262k vocabulary) for the context's whole life, so a long continuation is read over several decodes.
SCORE_ROWS_PER_DECODE = 32
MIN_CONTEXT = 512  # the scoring context grows by doubling from here up to the model's per-slot context


def chunks(first: int, n: int, n_batch: int, rows: int = SCORE_ROWS_PER_DECODE) -> Iterator[tuple[int, int]]:
    """(start, end) spans of tokens[:n - 1] per decode: at most n_batch tokens, at most `rows` of them at or
    after first - 1 (the positions whose logits score the next token; the last token predicts nothing)."""
    start, stop = 0, n - 1
    while start < stop:
        end = min(start + n_batch, stop, max(start, first - 1) + rows)
        yield start, end
        start = end


class LlamaScorer:
    """Scores token sequences on the model's weights; its context is created on first use (a model that never
    scores never pays for it) and sized to the longest sequence seen so far."""

    def __init__(self, model, max_context: int, n_batch: int, n_threads: int,
                 compute_lock: Optional[threading.Lock] = None):
        self._model = model
        # Held around each decode: the model's contexts share its cores, and two decodes at once (a scoring
        # beside the engine thread's step) oversubscribe them, slowing both several times over.
        self._compute = compute_lock or threading.Lock()
        self._max_context = max_context
        self._n_batch = n_batch
        self._threads = n_threads
        self._vocab = model.n_vocab()
        self._ctx: Optional[internals.LlamaContext] = None
        self._batch = None
        self._closed = False
        self._lock = threading.Lock()  # one scoring at a time; close() waits for it
        self.decodes = 0

    def score(self, tokens: Sequence[int], first: int) -> list[float]:
        """Natural-log probabilities of tokens[first:], each given every token before it."""
        if not 1 <= first < len(tokens):
            raise EngineError(f"scoring needs 1 <= first < {len(tokens)} tokens, got first={first}")
        with self._lock:
            if self._closed:
                raise EngineError("the model was unloaded while scoring")
            self._ensure_context(len(tokens))
            llama_cpp.llama_memory_clear(self._ctx.memory, True)  # every call starts from an empty sequence
            scores: list[float] = []
            for start, end in chunks(first, len(tokens), self._n_batch):
                scores.extend(self._decode(tokens, start, end, max(start, first - 1)))
            return scores

    def _ensure_context(self, needed: int) -> None:
        if self._ctx is not None and llama_cpp.llama_n_ctx(self._ctx.ctx) >= needed:
            return
        size = MIN_CONTEXT
        while size < needed:
            size *= 2
        # The model's per-slot context bounds it (callers check that `needed` fits): on a large model a second
        # full-context KV cache would cost GPU memory generation may want.
        size = max(needed, min(size, self._max_context))
        self._free_context()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = size
        params.n_batch = params.n_ubatch = self._n_batch
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = self._threads
        params.swa_full = False  # one sequence read in order: sliding-window layers need only their window
        params.no_perf = True
        self._ctx = internals.LlamaContext(model=self._model, params=params, verbose=False)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)

    def _decode(self, tokens: Sequence[int], start: int, end: int, flagged_from: int) -> list[float]:
        """Decode tokens[start:end]; rows from `flagged_from` on give the log-probability of the token after."""
        batch = self._batch
        for index, pos in enumerate(range(start, end)):
            batch.token[index], batch.pos[index], batch.n_seq_id[index] = tokens[pos], pos, 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = pos >= flagged_from
        batch.n_tokens = end - start
        with self._compute:
            status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status} while scoring")
        self.decodes += 1
        scores = []
        for pos in range(flagged_from, end):
            pointer = llama_cpp.llama_get_logits_ith(self._ctx.ctx, pos - start)
            # float64: a log-sum-exp over 262k float32 logits would lose the digits that tell close NLLs apart.
            logits = np.ctypeslib.as_array(pointer, shape=(self._vocab,)).astype(np.float64)
            peak = logits.max()
            log_total = peak + np.log(np.exp(logits - peak).sum())
            scores.append(float(logits[tokens[pos + 1]] - log_total))
        return scores

    def _free_context(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def close(self) -> None:
        """Free the scoring context (waits for a scoring in progress); later calls raise EngineError."""
        with self._lock:
            self._closed = True
            self._free_context()
