"""A scripted stand-in for llama.cpp: each character is a token, replies come from a queue."""
from __future__ import annotations

from dataclasses import replace

import json
import threading
import time
from typing import Sequence

from ollama_server.engine.backend import DecodeEntry
from ollama_server.engine.backend import EmbeddingShape
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.backend import ModelFacts
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import TokenLogprob

EOS = 0
FAKE_EMBED_DIM = 8


def fake_logprob(token: int) -> float:
    """The fake's log-probability of `token` at any position, whatever precedes it: -(token % 10 + 1) / 10."""
    return -(token % 10 + 1) / 10


class FakeSampler:
    """Replays one scripted reply, then EOS (unless banned), then '.' forever as a real model would ramble."""

    def __init__(self, reply: str, end: bool, ignore_eos: bool):
        self.reply = list(reply)
        self.end = end
        self.ignore_eos = ignore_eos
        self.closed = False

    def next_token(self, generated: int, min_tokens: int) -> int:
        if self.reply:
            return ord(self.reply.pop(0))
        banned = self.ignore_eos or generated < min_tokens
        if self.end and not banned:
            return EOS
        return ord(".")

    def close(self) -> None:
        self.closed = True


class FixedStepCosts:
    """Step costs that never change, so that the fake's draft lengths do not depend on timing."""

    def relative(self, rows: int) -> float:
        return 1.0 + 0.25 * (rows - 1)

    def wants_baseline(self) -> bool:
        return False

    def add(self, rows: int, seconds: float) -> None:
        """Not measured: the fake's steps cost what relative() says."""


class FakeModel:
    """Tokens are code points (EOS is 0); every decode step waits for the gate and the step delay."""

    def __init__(self, backend: "FakeBackend", path: str, options: LoadOptions):
        self.backend = backend
        self.path = path
        self.options = options
        self.n_slots = options.n_slots
        self.batch_capacity = options.n_batch
        self.facts = ModelFacts(architecture="fake", trained_context=options.n_ctx, context_length=options.n_ctx,
                                chat_template=None, bos_text="", eos_text="", vocab_size=0x110000)
        self.closed = False
        self.batches: list[list[DecodeEntry]] = []
        self.embed_decodes = 0
        self.embed_batches: list[list[list[int]]] = []  # the token sequences of each embedding decode
        self.copies: list[tuple[int, int]] = []          # (source seq, target seq) of each prefix copy
        self.step_costs = FixedStepCosts()
        self.forgotten: list[tuple[int, int]] = []       # (seq, from_pos) of each forget()
        self.scored: list[tuple[list[int], int]] = []    # (tokens, first) of each score()

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def token_bytes(self, token: int) -> bytes:
        return chr(token).encode("utf-8")

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOS

    def decode(self, entries: Sequence[DecodeEntry]) -> list:
        self.backend.gate.wait()
        if self.backend.token_delay_s:
            time.sleep(self.backend.token_delay_s)
        self.batches.append(list(entries))
        rows, row = [], -1
        for entry in entries:  # logits rows as llama.cpp numbers them: one per token that asks for them
            row += (len(entry.tokens) if entry.all_logits else 1) if entry.want_logits else 0
            rows.append(row if entry.want_logits else None)
        return rows

    def forget(self, seq: int, from_pos: int) -> bool:
        self.forgotten.append((seq, from_pos))
        return True

    def can_continue(self, seq: int, at: int) -> bool:
        return True

    def copy_sequence(self, source: int, target: int) -> None:
        self.copies.append((source, target))

    def can_draft(self, sampler: FakeSampler) -> bool:
        return self.backend.drafting

    def new_sampler(self, sampling: SamplingParams, prompt: Sequence[int], min_tokens: int = 0,
                    ignore_eos: bool = False, grammar: str | None = None) -> FakeSampler:
        self.backend.history.append((self.path, list(prompt), sampling))
        self.backend.grammars.append(grammar)
        reply, end = self.backend.next_reply()
        return FakeSampler(reply, end, ignore_eos)

    def sample(self, sampler: FakeSampler, row: int, generated: int, min_tokens: int, draft: int | None = None) -> int:
        """The scripted token, draft or not: a draft is kept exactly when it guessed the script."""
        return sampler.next_token(generated, min_tokens)

    def logprobs(self, row: int, token: int, top_n: int) -> TokenLogprob:
        """The fake is always certain: logprob 0 for the chosen character."""
        top = tuple((token, chr(token), 0.0) for _ in range(min(top_n, 1)))
        return TokenLogprob(token=token, text=chr(token), logprob=0.0, top=top)

    def embedding_shape(self) -> EmbeddingShape:
        """8-wide vectors, 64 tokens and 4 inputs per decode: small enough that tests see several decodes."""
        return EmbeddingShape(n_embd=FAKE_EMBED_DIM, max_batch_tokens=min(64, self.options.n_ctx), max_sequences=4,
                              pooling="mean")

    def embed_batch(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """A deterministic mean over the tokens: component i of a token t is (t * (i + 1)) % 7 - 3 (+0.5 so never 0)."""
        self.backend.gate.wait()
        self.embed_decodes += 1
        self.embed_batches.append([list(s) for s in sequences])
        return [[sum((t * (i + 1)) % 7 - 3 for t in tokens) / len(tokens) + 0.5 for i in range(FAKE_EMBED_DIM)]
                for tokens in sequences]

    def score(self, tokens: Sequence[int], first: int) -> list[float]:
        """fake_logprob() of each of tokens[first:]; waits for the gate like a decode."""
        self.backend.gate.wait()
        self.scored.append((list(tokens), first))
        return [fake_logprob(t) for t in tokens[first:]]

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    """Backend whose models replay `enqueue()`d replies; `history` records (path, prompt, sampling) per request."""

    def __init__(self, token_delay_s: float = 0.0):
        self.replies: list[tuple[str, bool]] = []
        self.history: list = []
        self.grammars: list = []  # the grammar each sampler was built with (None: unconstrained)
        self.loaded: list[FakeModel] = []
        self.token_delay_s = token_delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.load_gate = threading.Event()  # clear it to hold loads (a reload in progress, say)
        self.load_gate.set()
        self.load_error: Exception | None = None  # when set, loads raise it
        self.chat_template: str | None = None  # when set, the GGUF chat template its models carry
        self.drafting = False  # when set, its samplers verify drafts (speculative decoding is tried)
        self._lock = threading.Lock()
        self.closed = False

    def enqueue(self, text: str, end: bool = True) -> None:
        """The next request's reply is `text`, then EOS if `end`."""
        with self._lock:
            self.replies.append((text, end))

    def next_reply(self) -> tuple[str, bool]:
        with self._lock:
            return self.replies.pop(0) if self.replies else ("", True)

    def load(self, path: str, options: LoadOptions) -> FakeModel:
        self.load_gate.wait()
        if self.load_error is not None:
            raise self.load_error
        model = FakeModel(self, path, options)
        if self.chat_template is not None:
            model.facts = replace(model.facts, chat_template=self.chat_template)
        self.loaded.append(model)
        return model

    def json_schema_grammar(self, schema: dict, field: str) -> str:
        """A stand-in grammar that names the schema (the real converter is llama.cpp's)."""
        return "root ::= " + json.dumps(json.dumps(schema, sort_keys=True))

    def check_grammar(self, grammar: str, field: str) -> None:
        """The fake builds every grammar."""

    def close(self) -> None:
        self.closed = True
