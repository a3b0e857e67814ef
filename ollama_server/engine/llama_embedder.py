"""LlamaEmbedder: a second llama.cpp context on a loaded model's weights, used for embeddings only."""
from __future__ import annotations

from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from ollama_server.engine.backend import EmbeddingShape
from ollama_server.engine.types import EngineError


class LlamaEmbedder:
    """A second llama.cpp context on a model's weights, for embeddings only: every token is an output,
    sequences are pooled here from the per-token hidden states (pooling none in llama.cpp)."""

    def __init__(self, model, shape: EmbeddingShape, n_threads: int):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = shape.max_batch_tokens  # one ubatch per decode:
        params.n_seq_max = shape.max_sequences  # a sequence never straddles ubatches (non-causal models)
        params.n_threads = params.n_threads_batch = n_threads
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
        params.kv_unified = True  # the inputs of a decode share the cells: any mix of lengths fits
        params.no_perf = True
        self.shape = shape
        self._ctx = internals.LlamaContext(model=model, params=params, verbose=False)
        self._batch = llama_cpp.llama_batch_init(shape.max_batch_tokens, 0, 1)

    def run(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """One decode of `sequences` (seq_id = position in the list); their pooled vectors."""
        batch, index = self._batch, 0
        spans = []
        for seq, tokens in enumerate(sequences):
            spans.append((index, len(tokens)))
            for pos, token in enumerate(tokens):
                batch.token[index], batch.pos[index], batch.n_seq_id[index] = token, pos, 1
                batch.seq_id[index][0] = seq
                batch.logits[index] = True
                index += 1
        batch.n_tokens = index
        if self._ctx.memory is not None:  # non-causal embedding models may have no KV memory at all
            llama_cpp.llama_memory_clear(self._ctx.memory, True)
        status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status} while embedding")
        n_embd = self.shape.n_embd
        rows = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(self._ctx.ctx), shape=(index, n_embd))
        pooled = []
        for start, length in spans:
            own = rows[start:start + length]
            if self.shape.pooling == "cls":
                pooled.append(own[0].copy())
            elif self.shape.pooling == "last":
                pooled.append(own[-1].copy())
            else:
                pooled.append(own.mean(axis=0, dtype=np.float64).astype(np.float32))
        return pooled

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)
        self._ctx.close()
