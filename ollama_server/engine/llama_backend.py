"""LlamaBackend: loads GGUF models with llama-cpp-python. The only module that imports llama_cpp."""
from __future__ import annotations

import ctypes
import json
import threading
from typing import Callable
from typing import Iterator
from typing import Optional
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp import llama_grammar

from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.backend import ModelFacts
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob

_SPLIT_MODES = {
    "none": llama_cpp.LLAMA_SPLIT_MODE_NONE,
    "layer": llama_cpp.LLAMA_SPLIT_MODE_LAYER,
    "row": llama_cpp.LLAMA_SPLIT_MODE_ROW,
}


class LlamaModel:
    """A llama.cpp model and context; generate() must be driven by one thread at a time."""

    def __init__(self, path: str, options: LoadOptions):
        self._llama = llama_cpp.Llama(
            model_path=path,
            n_ctx=options.n_ctx,
            n_batch=options.n_batch,
            n_ubatch=options.n_batch,
            n_threads=options.n_threads,
            n_threads_batch=options.n_threads,
            n_gpu_layers=options.n_gpu_layers,
            split_mode=_SPLIT_MODES[options.split_mode],
            main_gpu=options.main_gpu,
            tensor_split=list(options.tensor_split) or None,
            verbose=False,
        )
        self._generate_lock = threading.Lock()
        llama = self._llama
        model = llama._model
        self._vocab = model.vocab
        metadata = llama.metadata
        self.facts = ModelFacts(
            architecture=metadata.get("general.architecture", "unknown"),
            trained_context=model.n_ctx_train(),
            context_length=llama.n_ctx(),
            chat_template=metadata.get("tokenizer.chat_template") or None,
            bos_text=model.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else "",
            eos_text=model.token_get_text(llama.token_eos()) if llama.token_eos() >= 0 else "",
            vocab_size=llama.n_vocab(),
        )
        self._pieces: dict[int, bytes] = {}
        self._eog_ids: Optional[np.ndarray] = None

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        # special=True so that template markers like <start_of_turn> become their control tokens.
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token)
        return piece

    def _piece(self, token: int) -> bytes:
        # llama-cpp-python's own helper returns a NUL-padded 32-byte buffer; use the length instead.
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if written >= 0:
                return buffer.raw[:written]
            size = -written

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def cached_prefix(self, prompt: Sequence[int]) -> int:
        """How many leading prompt tokens are already in the KV cache."""
        cached = self._llama._input_ids[: self._llama.n_tokens]
        count = 0
        for a, b in zip(cached, prompt):
            if a != b:
                break
            count += 1
        return count

    def generate(self, prompt: Sequence[int], sampling: SamplingParams,
                 ban_end_of_generation: Optional[Callable[[], bool]] = None,
                 reuse_prefix: bool = True) -> Iterator[int]:
        grammar = self._grammar(sampling.json_schema)
        processors = None
        if ban_end_of_generation is not None:
            processors = [self._eog_ban(ban_end_of_generation)]
        with self._generate_lock:
            llama = self._llama
            if not reuse_prefix:
                llama.reset()  # forget the cached prefix: the prompt is evaluated as one fresh batch
            if sampling.seed is not None:
                llama.set_seed(sampling.seed)
            yield from llama.generate(
                list(prompt),
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
                logits_processor=processors,
                grammar=grammar,
                reset=True,
            )

    def _grammar(self, schema: Optional[dict]):
        if schema is None:
            return None
        try:
            if not schema:  # any JSON value
                return llama_cpp.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)
            return llama_cpp.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as exc:  # the converter raises many kinds on unsupported schemas
            raise InvalidRequestError(f"unsupported JSON schema: {exc}", param="format") from None

    def _eog_ban(self, banned: Callable[[], bool]):
        """A logits processor that makes end-of-generation tokens impossible while banned()."""
        if self._eog_ids is None:
            n_vocab = self.facts.vocab_size
            self._eog_ids = np.array([t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)],
                                     dtype=np.intc)

        def process(input_ids, logits):
            if banned():
                logits[self._eog_ids] = -np.inf
            return logits
        return process

    def logprobs(self, token: int, top_n: int) -> TokenLogprob:
        # The context still holds the logits this token was sampled from (until the next decode).
        pointer = self._llama._ctx.get_logits_ith(-1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.facts.vocab_size,))  # a view: no copy
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum(dtype=np.float64)))
        top: tuple = ()
        if top_n > 0:
            best = np.argpartition(logits, -top_n)[-top_n:]
            best = best[np.argsort(-logits[best])]
            top = tuple((int(t), self._piece_text(int(t)), float(logits[t]) - log_total) for t in best)
        return TokenLogprob(token=token, text=self._piece_text(token), logprob=float(logits[token]) - log_total,
                            top=top)

    def _piece_text(self, token: int) -> str:
        return self.token_bytes(token).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._llama.close()


class LlamaBackend:
    """Backend that loads models with llama.cpp."""

    def load(self, path: str, options: LoadOptions) -> LlamaModel:
        return LlamaModel(path, options)
