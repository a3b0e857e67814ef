"""DraftModel: a small second llama.cpp model proposing tokens for the main model's sequences (speculative decoding).

One context of `n_slots` sequences, each with its own `n_ctx` cells and full sliding-window history (so its cache
can be cut back to any position). Per sequence it remembers which tokens its KV holds; each `propose` evaluates
only where the main model's history differs from them, then drafts greedily. Driven by the engine thread only.
"""
from __future__ import annotations

import logging
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from ollama_server.engine.llama_backend import _init_backend
from ollama_server.engine.llama_backend import open_context

DRAFT_BATCH = 512  # tokens per decode while catching up on history
log = logging.getLogger(__name__)


class _DecodeFailed(Exception):
    """llama_decode refused a batch (KV full, invalid token, ...)."""


def common_prefix(held: Sequence[int], history: Sequence[int]) -> int:
    """Length of the longest shared prefix of two token lists."""
    length = 0
    for a, b in zip(held, history):
        if a != b:
            break
        length += 1
    return length


class DraftModel:
    """A small second model that proposes tokens for the main model's sequences (speculative decoding)."""

    def __init__(self, path: str, n_slots: int, n_ctx: int, n_threads: int, n_gpu_layers: int = 0):
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        self._model = internals.LlamaModel(path_model=path, params=params, verbose=False)
        self.n_slots = max(1, n_slots)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx * self.n_slots
        ctx_params.n_batch = ctx_params.n_ubatch = DRAFT_BATCH
        ctx_params.n_seq_max = self.n_slots
        ctx_params.n_threads = ctx_params.n_threads_batch = n_threads
        ctx_params.kv_unified = False  # each sequence owns n_ctx cells
        ctx_params.swa_full = True     # sliding-window layers keep everything: a rejected draft can be cut anywhere
        ctx_params.no_perf = True
        self._ctx = open_context(self._model, ctx_params)
        self._batch = llama_cpp.llama_batch_init(DRAFT_BATCH, 0, 1)
        self._memory = self._ctx.memory
        self._vocab = self._model.vocab
        self.vocab_size: int = self._model.n_vocab()
        # llama.cpp may round the context it was asked for: trust what it reports per sequence.
        self.n_ctx = min(n_ctx, llama_cpp.llama_n_ctx(self._ctx.ctx) // self.n_slots)
        self.evaluated_tokens = 0  # tokens fed to the draft's KV so far (history catch-up and drafts)
        self._held: list[list[int]] = [[] for _ in range(self.n_slots)]
        self._closed = False

    def propose(self, seq: int, history: Sequence[int], max_tokens: int) -> list[int]:
        """Up to `max_tokens` greedy tokens continuing `history` (fewer at end-of-generation); [] on any failure."""
        if self._closed:
            raise RuntimeError("the draft model is closed")
        if not 0 <= seq < self.n_slots:
            raise ValueError(f"seq must be in [0, {self.n_slots}), got {seq}")
        if max_tokens <= 0 or not history or len(history) > self.n_ctx - max_tokens - 1:
            return []
        try:
            row = self._catch_up(seq, history)
            return self._draft(seq, row, len(history), max_tokens)
        except _DecodeFailed as exc:
            # A failed decode leaves the sequence's KV in an unknown state: start it over next time.
            log.warning("draft model: decode failed for seq %d (llama_decode status %s); its cache is reset",
                        seq, exc)
            self.release(seq)
            return []

    def _decode(self, seq: int, tokens: Sequence[int], start: int) -> int:
        """Feed `tokens` at positions from `start`; the batch row holding the last one's logits."""
        batch = self._batch
        last = len(tokens) - 1
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = start + index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq
            batch.logits[index] = index == last
        batch.n_tokens = len(tokens)
        status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise _DecodeFailed(status)
        self._held[seq].extend(tokens)
        self.evaluated_tokens += len(tokens)
        return last

    def _catch_up(self, seq: int, history: Sequence[int]) -> int:
        """Make the KV hold exactly `history`; the logits row of its last token."""
        held = self._held[seq]
        # Logits are needed for the last history token, so it is re-evaluated even when already held.
        keep = min(common_prefix(held, history), len(history) - 1)
        if keep < len(held):
            if not llama_cpp.llama_memory_seq_rm(self._memory, seq, keep, -1):
                llama_cpp.llama_memory_seq_rm(self._memory, seq, 0, -1)
                keep = 0
            del held[keep:]
        row = 0
        for start in range(keep, len(history), DRAFT_BATCH):
            row = self._decode(seq, history[start:start + DRAFT_BATCH], start)
        return row

    def _draft(self, seq: int, row: int, pos: int, max_tokens: int) -> list[int]:
        """Greedy tokens from logits row `row`, each fed back in so the next propose only diffs."""
        proposed: list[int] = []
        while True:
            # A view on llama.cpp's buffer, valid until the next decode: argmax reads it first.
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, row),
                                           shape=(self.vocab_size,))
            token = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            proposed.append(token)
            if len(proposed) >= max_tokens or pos >= self.n_ctx - 1:
                break  # the last proposal's logits are not needed: it is not evaluated
            row = self._decode(seq, [token], pos)
            pos += 1
        return proposed

    def release(self, seq: int) -> None:
        """Forget what the draft holds for `seq` (its request ended)."""
        if not self._closed and 0 <= seq < self.n_slots:
            llama_cpp.llama_memory_seq_rm(self._memory, seq, 0, -1)
            self._held[seq] = []

    def close(self) -> None:
        """Free the draft model's memory (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        llama_cpp.llama_batch_free(self._batch)
        self._ctx.close()
        self._model.close()
