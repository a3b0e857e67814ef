"""LlamaBackend: llama.cpp through llama-cpp-python's low-level API. The only module that imports llama_cpp.

One llama.cpp context per loaded model holds `n_slots` sequences; the engine's scheduler feeds it
batches that mix prompt chunks and one decode token per running sequence (continuous batching).
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import threading
from typing import Optional
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals
from llama_cpp import llama_grammar

from ollama_server.engine.backend import DecodeEntry
from ollama_server.engine.backend import EmbeddingShape
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.backend import ModelFacts
from ollama_server.engine.grammar_checker import GrammarChecker
from ollama_server.engine.llama_embedder import LlamaEmbedder
from ollama_server.engine.llama_log import route_llama_logs
from ollama_server.engine.llama_scorer import LlamaScorer
from ollama_server.engine.sampler import PENALTY_WINDOW
from ollama_server.engine.sampler import TruncatedSampler
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob

_SPLIT_MODES = {"none": llama_cpp.LLAMA_SPLIT_MODE_NONE, "layer": llama_cpp.LLAMA_SPLIT_MODE_LAYER,
                "row": llama_cpp.LLAMA_SPLIT_MODE_ROW}
# GGUF <arch>.pooling_type values; none (a causal LM such as Gemma) is pooled by the mean, see docs/api.md.
_POOLINGS = {0: "mean", 1: "mean", 2: "cls", 3: "last"}
# Tokens per embedding decode: the logits buffer llama.cpp keeps beside the embeddings costs n_vocab floats
# per token (1 MiB for Gemma's 262k vocabulary), so the embedding context is capped rather than context-sized.
EMBED_BATCH_TOKENS = 512
EMBED_MAX_SEQUENCES = 64
_backend_ready = threading.Lock()
_backend_initialised = False


def _init_backend() -> None:
    global _backend_initialised
    with _backend_ready:
        if not _backend_initialised:
            llama_cpp.llama_backend_init()
            _backend_initialised = True


def open_context(model, params):
    """A llama.cpp context on `model`'s weights; the model is freed when the context cannot be made."""
    try:
        return internals.LlamaContext(model=model, params=params, verbose=False)
    except Exception:
        model.close()
        raise


class SlotSampler:
    """A grammar-constrained request's llama.cpp chain; a second chain bans end-of-generation while
    min_tokens is unmet."""

    def __init__(self, chain, banned_chain=None, ban_always: bool = False):
        self.chain = chain
        self.banned_chain = banned_chain
        self.ban_always = ban_always

    def close(self) -> None:
        for chain in (self.chain, self.banned_chain):
            if chain is not None:
                chain.close()


class LlamaBatchModel:
    """A llama.cpp model with one context of `n_slots` sequences; driven by one engine thread."""

    def __init__(self, path: str, options: LoadOptions):
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = options.n_gpu_layers
        params.split_mode = _SPLIT_MODES[options.split_mode]
        params.main_gpu = options.main_gpu
        if options.tensor_split:
            split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*options.tensor_split)
            self._tensor_split = split  # keep alive: llama.cpp reads it during load
            params.tensor_split = split
        self._model = internals.LlamaModel(path_model=path, params=params, verbose=False)
        n_slots = max(1, options.n_slots)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = options.n_ctx * n_slots
        ctx_params.n_batch = options.n_batch
        ctx_params.n_ubatch = options.n_batch
        ctx_params.n_seq_max = n_slots
        ctx_params.n_threads = options.n_threads
        ctx_params.n_threads_batch = options.n_threads
        ctx_params.kv_unified = False   # each slot owns n_ctx cells: one long request cannot starve the others
        # Sliding-window layers keep only their window (as llama-server does by default): the full history
        # would triple Gemma 3's KV memory. A prefix is reused only while its window is still cached
        # (can_continue); a draft's rejected tail is cut without losing cells (the window moves on only from
        # the position a batch starts at).
        ctx_params.swa_full = False
        ctx_params.no_perf = True
        self._ctx = open_context(self._model, ctx_params)
        self._memory = self._ctx.memory
        self._batch = llama_cpp.llama_batch_init(options.n_batch, 0, 1)
        self.batch_capacity = options.n_batch
        self.n_slots = n_slots
        self._vocab = self._model.vocab
        metadata = self._model.metadata()
        bos, eos = self._model.token_bos(), self._model.token_eos()
        self.facts = ModelFacts(
            architecture=metadata.get("general.architecture", "unknown"),
            trained_context=self._model.n_ctx_train(),
            context_length=llama_cpp.llama_n_ctx(self._ctx.ctx) // n_slots,
            chat_template=metadata.get("tokenizer.chat_template") or None,
            bos_text=self._model.token_get_text(bos) if bos >= 0 else "",
            eos_text=self._model.token_get_text(eos) if eos >= 0 else "",
            vocab_size=self._model.n_vocab(),
            gpu_offload_supported=bool(llama_cpp.llama_supports_gpu_offload()),
            gpu_layers=options.n_gpu_layers,
        )
        self._n_swa = llama_cpp.llama_model_n_swa(self._model.model)
        # Recurrent state cannot be cut back to a position: no prefix reuse below the end, no drafts.
        self.supports_rollback = not (llama_cpp.llama_model_is_recurrent(self._model.model)
                                      or llama_cpp.llama_model_is_hybrid(self._model.model))
        self._pieces: dict[int, bytes] = {}
        self._metadata = metadata
        self._embedder: Optional[LlamaEmbedder] = None
        self._embed_lock = threading.Lock()  # one embedding decode at a time; close() waits for it
        self._threads = options.n_threads
        self.embed_decodes = 0
        self._compute = threading.Lock()  # one computation at a time (step, embedding, scoring): they share cores
        self._scorer = LlamaScorer(self._model, self.facts.context_length, options.n_batch, options.n_threads,
                                   self._compute)
        # Found once at load (~0.3 s for 262k tokens) rather than in the middle of someone's stream.
        self._eog_ids = [t for t in range(self.facts.vocab_size) if llama_cpp.llama_vocab_is_eog(self._vocab, t)]
        self._eog_array = np.array(self._eog_ids, dtype=np.intp)

    # --- text ---------------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool) -> list[int]:
        # special=True so that template markers like <start_of_turn> become their control tokens.
        return self._model.tokenize(text.encode("utf-8"), add_special, True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        return piece if piece is not None else self._pieces.setdefault(token, self._piece(token))

    def _piece(self, token: int) -> bytes:
        # llama-cpp-python's own helper returns a NUL-padded 32-byte buffer; use the written length.
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if written >= 0:
                return buffer.raw[:written]
            size = -written

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # --- decoding -----------------------------------------------------------------------------
    def decode(self, entries: Sequence[DecodeEntry]) -> list[Optional[int]]:
        """Evaluate one batch; returns, per entry, the batch index of its logits (None if not asked)."""
        batch = self._batch
        index = 0
        logit_rows: list[Optional[int]] = []
        for entry in entries:
            last = len(entry.tokens) - 1
            for offset, token in enumerate(entry.tokens):
                batch.token[index] = token
                batch.pos[index] = entry.start_pos + offset
                batch.n_seq_id[index] = 1
                batch.seq_id[index][0] = entry.seq
                batch.logits[index] = entry.want_logits and (entry.all_logits or offset == last)
                index += 1
            logit_rows.append(index - 1 if entry.want_logits else None)
        batch.n_tokens = index
        with self._compute:
            status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if status != 0:
            raise EngineError(f"llama_decode failed with status {status} (KV cache full or batch invalid)")
        return logit_rows

    def forget(self, seq: int, from_pos: int) -> bool:
        """Drop a sequence's KV cells from `from_pos` on; False if llama.cpp cannot cut there."""
        return bool(llama_cpp.llama_memory_seq_rm(self._memory, seq, from_pos, -1))

    def can_continue(self, seq: int, at: int) -> bool:
        """Whether the cells a token at `at` attends to are all still cached (llama-server's rule for SWA)."""
        if at <= 0:
            return True
        if not self.supports_rollback:
            return False
        if self._n_swa <= 0:
            return True
        lowest = llama_cpp.llama_memory_seq_pos_min(self._memory, seq)
        return 0 <= lowest <= max(0, at - self._n_swa)

    def copy_sequence(self, source: int, target: int) -> None:
        """Copy `source`'s cells over `target`'s (each slot has its own stream: llama.cpp copies the buffers
        at the start of the next decode, before that batch is written)."""
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    # --- sampling -----------------------------------------------------------------------------
    def new_sampler(self, sampling: SamplingParams, prompt: Sequence[int], min_tokens: int = 0,
                    ignore_eos: bool = False, grammar: Optional[str] = None):
        if grammar is None:
            # llama.cpp's chain copies all 262k logits into a candidate array per token (~1.5 ms per slot);
            # the truncated sampler applies the same chain to the few tokens that can matter (~0.1 ms).
            seed = sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            return TruncatedSampler(sampling, prompt, self._eog_array, seed, ban_always=ignore_eos)
        chain = self._chain(sampling, prompt, grammar, ban_eog=ignore_eos)
        banned = None
        if min_tokens > 0 and not ignore_eos:
            banned = self._chain(sampling, prompt, grammar, ban_eog=True)
        return SlotSampler(chain, banned, ban_always=ignore_eos)

    @staticmethod
    def can_draft(sampler) -> bool:
        """Whether a request's sampler can verify draft tokens (not a grammar-constrained chain)."""
        return isinstance(sampler, TruncatedSampler)

    def _chain(self, sampling: SamplingParams, prompt: Sequence[int], grammar: Optional[str], ban_eog: bool):
        chain = internals.LlamaSampler()
        if ban_eog:
            chain.add_logit_bias(self.facts.vocab_size, {t: float("-inf") for t in self._end_tokens()})
        if sampling.repeat_penalty != 1.0 or sampling.frequency_penalty or sampling.presence_penalty:
            chain.add_penalties(self.facts.vocab_size, PENALTY_WINDOW, sampling.repeat_penalty,
                                sampling.frequency_penalty, sampling.presence_penalty)
            for token in prompt[-PENALTY_WINDOW:]:  # penalties see the prompt too, as in llama-server
                chain.accept(token)
        if grammar is not None:
            # Called directly rather than through LlamaSampler.add_grammar, which would add a NULL
            # sampler (a crash at the first token) when llama.cpp refuses the grammar.
            constraint = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
            if not constraint:
                chain.close()
                raise InvalidRequestError("llama.cpp could not build the grammar for this request",
                                          param=sampling.schema_field)
            llama_cpp.llama_sampler_chain_add(chain.sampler, constraint)
        if sampling.temperature <= 0:
            chain.add_greedy()
        else:
            # top_k first: it cuts the 262k-entry vocabulary down before the costlier steps.
            if sampling.top_k > 0:
                chain.add_top_k(sampling.top_k)
            chain.add_top_p(sampling.top_p, 1)
            chain.add_min_p(sampling.min_p, 1)
            chain.add_temp(sampling.temperature)
            chain.add_dist(sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        return chain

    def sample(self, sampler, row: int, generated: int, min_tokens: int, draft: Optional[int] = None) -> int:
        """Sample the next token from logits row `row`; end-of-generation is banned below min_tokens. With a
        `draft` token (speculative decoding) the result is the draft when verification keeps it."""
        if isinstance(sampler, TruncatedSampler):
            return sampler.sample(self._logits(row), ban_end=generated < min_tokens, draft=draft)
        use_banned = sampler.banned_chain is not None and generated < min_tokens
        active, other = (sampler.banned_chain, sampler.chain) if use_banned else (sampler.chain, sampler.banned_chain)
        token = llama_cpp.llama_sampler_sample(active.sampler, self._ctx.ctx, row)
        if other is not None:
            other.accept(token)  # keep penalty and grammar state identical in both chains
        return token

    def _end_tokens(self) -> list[int]:
        return self._eog_ids

    def logprobs(self, row: int, token: int, top_n: int) -> TokenLogprob:
        """Log-probability of `token` under logits row `row`, and the top_n alternatives."""
        logits = self._logits(row)
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum(dtype=np.float64)))
        top: tuple = ()
        if top_n > 0:
            best = np.argpartition(logits, -top_n)[-top_n:]
            best = best[np.argsort(-logits[best])]
            top = tuple((int(t), self._piece_text(int(t)), float(logits[t]) - log_total) for t in best)
        return TokenLogprob(token=token, text=self._piece_text(token), logprob=float(logits[token]) - log_total,
                            top=top)

    def _logits(self, row: int) -> np.ndarray:
        """Logits of batch row `row` as a numpy view (valid until the next decode)."""
        pointer = llama_cpp.llama_get_logits_ith(self._ctx.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self.facts.vocab_size,))

    def _piece_text(self, token: int) -> str:
        return self.token_bytes(token).decode("utf-8", errors="replace")

    # --- embeddings ---------------------------------------------------------------------------
    def embedding_shape(self) -> EmbeddingShape:
        arch = self.facts.architecture
        pooling = int(self._metadata.get(f"{arch}.pooling_type", 0) or 0)
        if pooling not in _POOLINGS:  # rank (rerankers) yields scores, not vectors
            raise InvalidRequestError(f"this model's pooling type ({pooling}) does not produce embeddings",
                                      param="model")
        return EmbeddingShape(n_embd=self._model.n_embd(),
                              max_batch_tokens=min(self.facts.context_length, EMBED_BATCH_TOKENS),
                              max_sequences=EMBED_MAX_SEQUENCES, pooling=_POOLINGS[pooling])

    def embed_batch(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        shape = self.embedding_shape()
        with self._embed_lock:
            if self._batch is None:
                raise EngineError("the model was unloaded while embedding")
            if self._embedder is None:  # lazy: a model that never embeds never pays for the context
                self._embedder = LlamaEmbedder(self._model, shape, self._threads)
            self.embed_decodes += 1
            with self._compute:
                return self._embedder.run(sequences)

    def score(self, tokens: Sequence[int], first: int) -> list[float]:
        """Log-probabilities of tokens[first:], each given all before it, on the scoring context (any thread)."""
        return self._scorer.score(tokens, first)

    def close(self) -> None:
        self._scorer.close()
        with self._embed_lock:
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
                self._batch = None
            self._ctx.close()
            self._model.close()


class LlamaBackend:
    """Backend that loads models with llama.cpp."""

    def __init__(self):
        route_llama_logs()  # before any model loads: llama.cpp's lines join the service's log, at their levels
        self.grammar_checker = GrammarChecker()

    def load(self, path: str, options: LoadOptions) -> LlamaBatchModel:
        return LlamaBatchModel(path, options)

    def load_draft(self, path: str, options: LoadOptions):
        """The draft model for speculative decoding, one sequence per slot of the model it drafts for."""
        from ollama_server.engine.draft_model import DraftModel
        return DraftModel(path, n_slots=max(1, options.n_slots), n_ctx=options.n_ctx, n_threads=options.n_threads,
                          n_gpu_layers=options.n_gpu_layers)

    def json_schema_grammar(self, schema: dict, field: str) -> str:
        """GBNF for a JSON schema ({} = any JSON value), by llama.cpp's own converter."""
        if not schema:
            return llama_grammar.JSON_GBNF
        try:
            return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        except Exception as exc:  # the converter raises many kinds (assertions included) on schemas it cannot take
            raise InvalidRequestError(f"{field}: unsupported JSON schema: {exc}", param=field) from None

    def check_grammar(self, grammar: str, field: str) -> None:
        """Raise InvalidRequestError unless llama.cpp builds `grammar` (tried in the checker process)."""
        problem = self.grammar_checker.check(grammar)
        if problem:
            raise InvalidRequestError(f"{field}: {problem}", param=field)

    def close(self) -> None:
        self.grammar_checker.close()


def check_grammars_forever(memory_bytes: int) -> None:
    """The checker process: read length-prefixed grammars on stdin, answer "ok" or "error <why>" per line."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # llama.cpp reports why a grammar failed on stderr: keep it in a file to quote it back.
    log = tempfile.TemporaryFile()
    os.dup2(log.fileno(), 2)
    _init_backend()
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = source.read(8)
        if len(header) < 8:
            return
        grammar = source.read(int.from_bytes(header, "big"))
        log.seek(0)
        log.truncate()
        sampler = llama_cpp.llama_sampler_init_grammar(None, grammar, b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
            sink.write(b"ok\n")
        else:
            log.seek(0)
            lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
            why = lines[0] if lines else "llama.cpp could not parse the grammar"
            sink.write(b"error " + why.encode("utf-8", "replace").replace(b"\n", b" ") + b"\n")
        sink.flush()
