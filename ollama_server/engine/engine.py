"""Engine: admission — resolves the model, checks limits and constraints, tokenizes, queues, records."""
from __future__ import annotations

import logging
import time
from typing import Callable
from typing import Optional

from ollama_server.engine.backend import Backend
from ollama_server.engine import embeddings
from ollama_server.engine import infill
from ollama_server.engine import scoring
from ollama_server.engine.chat_format import render_chat
from ollama_server.engine.generation import Generation
from ollama_server.engine.placement import PlacementOverrides
from ollama_server.engine.records import RequestLog
from ollama_server.engine.records import recorded_call
from ollama_server.engine.regex_grammar import RegexError
from ollama_server.engine.regex_grammar import choice_to_gbnf
from ollama_server.engine.regex_grammar import regex_to_gbnf
from ollama_server.engine.pool import ModelPool
from ollama_server.engine.runner import RetiredError
from ollama_server.engine.schema_limits import SchemaLimits
from ollama_server.engine.schema_limits import check_grammar_size
from ollama_server.engine.schema_limits import check_schema
from ollama_server.engine.snapshot import EngineSnapshot
from ollama_server.engine.tool_calls import ToolCallGeneration
from ollama_server.engine.tool_calls import parses_tools
from ollama_server.engine.tool_grammar import tool_call_grammar
from ollama_server.engine.tracking import RequestBook
from ollama_server.engine.types import CapabilityError
from ollama_server.engine.types import ContextLengthError
from ollama_server.engine.types import EngineError
from ollama_server.engine.types import GenerateRequest
from ollama_server.engine.types import InvalidRequestError
from ollama_server.engine.types import ModelNotFoundError
from ollama_server.engine.types import SamplingParams
from ollama_server.engine.types import UnavailableError
from ollama_server.models.catalogue import Catalogue
from ollama_server.models.catalogue import ModelSpec
from ollama_server.settings import Settings

log = logging.getLogger(__name__)
RETIRED_RETRIES = 3  # resubmissions of a request whose runner a reload replaced (each swap is one reload)


class Engine:
    """The one entry point for inference: `submit(request) -> Generation`."""

    def __init__(self, catalogue: Catalogue, backend: Backend, settings: Settings,
                 trained_context: Callable[[str], Optional[int]] | None = None,
                 placements: PlacementOverrides | None = None,
                 broken_file: Callable[[ModelSpec], Optional[str]] | None = None):
        self.catalogue = catalogue
        self.backend = backend
        self.settings = settings
        # trained_context: a path's trained context length, or None (unknown; the store decides, inspection off
        # included), so that the engine itself never reads a GGUF header.
        # broken_file: why a model's file is known broken (a failed load of it is then a 400), from the store.
        self.pool = ModelPool(backend, settings, trained_context or (lambda path: None), placements, broken_file)
        self.placements = self.pool.placements
        self.requests = RequestBook(keep_finished=256)  # for /api/progress and /api/dismiss
        self.records = RequestLog()  # one record per request that ended, for metrics and alerts
        self._closing = False
        self.schema_limits = SchemaLimits(settings.max_schema_depth, settings.max_schema_repetition,
                                          settings.max_grammar_bytes)

    # --- requests -----------------------------------------------------------------------------
    def resolve(self, model: Optional[str]) -> ModelSpec:
        """The spec for a model name; no name means the catalogue's first default candidate (the active model
        if one is set, else the smallest, never one whose inspection failed while another is usable) that
        has not failed to load; when every candidate has, the first (its load error is the answer)."""
        if model is None or model == "":
            first = None
            for spec in self.catalogue.candidates():
                if not self.pool.has_failed(spec.name):
                    return spec
                first = first or spec
            if first is None:
                raise ModelNotFoundError("(none available)")
            return first
        spec = self.catalogue.get(model)
        if spec is None:
            raise ModelNotFoundError(model)
        return spec

    def default_model(self) -> Optional[ModelSpec]:
        """The model a request naming none gets now (what listings should call the default), or None."""
        try:
            return self.resolve(None)
        except ModelNotFoundError:
            return None

    def submit(self, request: GenerateRequest, request_id: str | None = None) -> Generation:
        """Validate, tokenize and queue a request; errors are raised here, before any output.
        Every request leaves one record: rejected here, or done / failed / cancelled when it ends."""
        started = time.monotonic()
        try:
            return self._submit(request, request_id)
        except EngineError as exc:
            self.records.append(request_id=request_id or "", dialect=request.dialect, endpoint=request.endpoint,
                                model=request.model or "", outcome="rejected", error_kind=exc.kind,
                                finish_reason=None, prompt_tokens=0, completion_tokens=0, cached_tokens=0,
                                queue_s=None, ttft_s=None, duration_s=time.monotonic() - started)
            raise

    def _submit(self, request: GenerateRequest, request_id: str | None) -> Generation:
        if self._closing:
            raise UnavailableError("server is shutting down")
        submitted = time.monotonic()
        spec = self.resolve(request.model)
        grammar = self._grammar(request)  # before loading: a bad schema costs no model load
        runner, load_s = self.pool.runner_for(spec, request.num_ctx)
        try:
            prompt_ids, max_tokens = self._fit(runner.model, request)
        except CapabilityError as exc:  # raised where the model is known only by its vocabulary or template
            raise exc.named(spec.name) from None
        kind = ToolCallGeneration if parses_tools(request) else Generation  # its chunks carry the parsed calls
        generation = kind(request, spec.name, prompt_ids, max_tokens,
                          deadline=submitted + self.settings.request_timeout, request_id=request_id)
        generation.submitted_at = submitted
        generation.load_s = load_s
        generation.grammar = grammar
        self.requests.add(generation)  # first: a live request of the same id is refused before queueing
        generation.on_end = self._record_end  # before enqueue: a quick generation may end at once
        try:
            for attempt in range(RETIRED_RETRIES + 1):
                try:
                    runner.enqueue(generation)
                    break
                except RetiredError:
                    # A reload swapped the runner after we got it: the new one serves, with its own context.
                    if attempt == RETIRED_RETRIES:
                        raise
                    runner, more_load_s = self.pool.runner_for(spec, request.num_ctx)
                    generation.load_s += more_load_s
                    generation.prompt_tokens, generation.max_tokens = self._fit(runner.model, request)
        except EngineError as exc:
            generation.on_end = None  # not an ending: submit() records the rejection
            generation.fail(exc)  # never left looking queued
            raise
        return generation

    def _fit(self, model, request: GenerateRequest) -> tuple[list[int], int]:
        """(prompt token ids, max tokens) of a request on a loaded model; raises when it does not fit."""
        prompt_ids = self._prompt_tokens(model, request)
        if not prompt_ids:  # nothing to evaluate means no logits to sample from: it would wait forever
            raise InvalidRequestError("the prompt has no tokens; send at least one", param="prompt")
        return prompt_ids, self._max_tokens(request, len(prompt_ids), model.facts.context_length)

    def _record_end(self, generation: Generation) -> None:
        """The record of a generation the engine has let go of."""
        usage = generation.usage
        request = generation.request
        elapsed = time.monotonic() - generation.submitted_at
        ttft = usage.queue_s + usage.prompt_eval_s if usage and usage.completion_tokens else None
        self.records.append(
            request_id=generation.id, dialect=request.dialect, endpoint=request.endpoint, model=generation.model,
            outcome=generation.state, error_kind=generation.error.kind if generation.error else None,
            finish_reason=generation.finish_reason, prompt_tokens=len(generation.prompt_tokens),
            completion_tokens=generation.generated, cached_tokens=usage.cached_tokens if usage else 0,
            queue_s=usage.queue_s if usage else None, ttft_s=ttft,
            duration_s=usage.total_s if usage else elapsed)

    def grammar_for(self, sampling: SamplingParams) -> Optional[str]:
        """The checked GBNF grammar for a request's constraint (JSON schema, regex, choice or GBNF; None without
        one); InvalidRequestError naming the field when there are several, when one is outside the limits or
        the regex subset, or when llama.cpp cannot build the grammar."""
        field = sampling.schema_field
        given = [name for name, value in (("json_schema", sampling.json_schema), ("regex", sampling.regex),
                                          ("choice", sampling.choice), ("grammar", sampling.grammar))
                 if value is not None]
        if not given:
            return None
        if len(given) > 1:
            raise InvalidRequestError(f"{field}: give one output constraint, not {' and '.join(given)}", param=field)
        try:
            if sampling.json_schema is not None:
                check_schema(sampling.json_schema, self.schema_limits, field)
                grammar = self.backend.json_schema_grammar(sampling.json_schema, field)
            elif sampling.regex is not None:
                grammar = regex_to_gbnf(sampling.regex, self.schema_limits.max_repetition)
            elif sampling.choice is not None:
                grammar = choice_to_gbnf(sampling.choice)
            else:
                grammar = sampling.grammar
        except RegexError as exc:
            raise InvalidRequestError(f"{field}: {exc}", param=field) from None
        check_grammar_size(grammar, self.schema_limits, field)
        self.backend.check_grammar(grammar, field)
        return grammar

    def _grammar(self, request: GenerateRequest) -> Optional[str]:
        """The request's output constraint, or the grammar forcing a tool call (tool_choice required / named)."""
        if not (request.tools and request.tool_choice == "required"):
            return self.grammar_for(request.sampling)
        sampling = request.sampling
        if any(v is not None for v in (sampling.json_schema, sampling.regex, sampling.choice, sampling.grammar)):
            raise InvalidRequestError(f"tool_choice: a required tool call cannot be combined with "
                                      f"{sampling.schema_field}", param="tool_choice")
        grammar = tool_call_grammar(request.tools, request.tool_name, request.parallel_tool_calls,
                                    self.backend.json_schema_grammar, self.schema_limits)
        check_grammar_size(grammar, self.schema_limits, "tools")
        self.backend.check_grammar(grammar, "tools")
        return grammar

    def _prompt_tokens(self, model, request: GenerateRequest) -> list[int]:
        if request.infill is not None:  # fill-in-the-middle, from the model's FIM tokens
            return infill.prompt_tokens(model, request.infill)
        if request.messages is not None:
            facts = model.facts
            tools = request.tools if request.tool_choice != "none" else ()
            text = render_chat(request.messages, template=facts.chat_template, architecture=facts.architecture,
                               bos_token=facts.bos_text, eos_token=facts.eos_text, tools=tools,
                               think=request.think, think_field=request.think_field,
                               template_vars=request.template_vars)
            # A template that writes BOS itself must not get a second one from the tokenizer.
            add_special = not (facts.bos_text and text.startswith(facts.bos_text))
            return model.tokenize(text, add_special=add_special)
        if request.prompt_tokens is not None:
            vocab = model.facts.vocab_size
            bad = next((t for t in request.prompt_tokens if not 0 <= t < vocab), None)
            if bad is not None:
                raise InvalidRequestError(f"token id {bad} is outside the vocabulary (0..{vocab - 1})",
                                          param="prompt")
            return list(request.prompt_tokens)
        if request.prompt is None:
            raise InvalidRequestError("either a prompt or messages is required", param="prompt")
        return model.tokenize(request.prompt, add_special=request.add_special)

    def _max_tokens(self, request: GenerateRequest, prompt_tokens: int, model_context: int) -> int:
        context = min(request.num_ctx or model_context, model_context)
        room = context - prompt_tokens
        if room <= 0:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens. However, your prompt has "
                f"{prompt_tokens} tokens, which leaves no room for a completion.",
                prompt_tokens=prompt_tokens, context_length=context, max_tokens=request.max_tokens)
        if request.max_tokens is None:
            return room
        if request.max_tokens > room and request.cap_to_context:
            return room
        if request.max_tokens > room:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + request.max_tokens} tokens ({prompt_tokens} in the prompt, "
                f"{request.max_tokens} in the completion). Please reduce the prompt or the completion length.",
                prompt_tokens=prompt_tokens, context_length=context, max_tokens=request.max_tokens)
        return request.max_tokens

    def prompt_tokens(self, request: GenerateRequest) -> tuple[str, list[int]]:
        """(model name, the prompt token ids a generation of `request` would get), loading the model if needed."""
        spec = self.resolve(request.model)
        runner, _ = self.pool.runner_for(spec, request.num_ctx)
        # The same path as submit, so that template, BOS handling and add_special cannot drift apart.
        return spec.name, self._prompt_tokens(runner.model, request)

    def tokenize(self, model: Optional[str], text: str, add_special: bool = True) -> tuple[str, list[int]]:
        """(model name, token ids) for text, loading the model if needed."""
        spec = self.resolve(model)
        runner, _ = self.pool.runner_for(spec)
        return spec.name, runner.model.tokenize(text, add_special=add_special)

    def detokenize(self, model: Optional[str], tokens: list[int]) -> str:
        """Text for token ids, loading the model if needed."""
        spec = self.resolve(model)
        runner, _ = self.pool.runner_for(spec)
        vocab = runner.model.facts.vocab_size
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param="tokens")
        return runner.model.detokenize(tokens)

    def embed(self, model: Optional[str], inputs: list, truncate: bool = True, dimensions: Optional[int] = None,
              *, num_ctx: Optional[int] = None, dialect: str = "", endpoint: str = "") -> embeddings.EmbedResult:
        """Unit-norm embeddings of `inputs` (texts or token-id lists), batched; one record per request."""
        return recorded_call(self.records, lambda: embeddings.embed(self, model, inputs, truncate, dimensions, num_ctx),
                             dialect=dialect, endpoint=endpoint, model=model or "",
                             prompt_tokens=lambda result: result.prompt_tokens, model_of=lambda result: result.model)

    def score(self, request: GenerateRequest, continuation: str) -> scoring.ScoreResult:
        """Log-likelihood of `continuation` after `request`'s rendered prompt (engine/scoring.py); one record."""
        return scoring.score(self, request, continuation)

    def get_request(self, request_id: str) -> Optional[Generation]:
        """A current or recently finished request, for progress reporting."""
        return self.requests.get(request_id)

    def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request; False if there is no such live request."""
        return self.requests.cancel(request_id)

    # --- models (the pool's) -------------------------------------------------------------------
    def set_keep_alive(self, name: str, seconds: Optional[float]) -> None:
        """Keep a loaded model for `seconds` after its last use (None or negative: forever; 0: unload when idle)."""
        self.pool.set_keep_alive(name, seconds)

    def unload_expired(self) -> list[str]:
        """Unload idle models whose keep-alive has run out; returns their names."""
        return self.pool.unload_expired()

    def loaded_facts(self, name: str):
        """ModelFacts of a loaded model, or None when it is not loaded."""
        return self.pool.loaded_facts(name)

    def runtime_context(self, spec: ModelSpec) -> int:
        """The context window requests get now: the loaded one, else the default capped by the trained one."""
        return self.pool.runtime_context(spec)

    def load(self, name: Optional[str] = None) -> ModelSpec:
        """Load a model (the smallest if unnamed) without generating."""
        spec = self.resolve(name)
        self.pool.runner_for(spec)
        return spec

    def unload(self, name: str) -> bool:
        """Unload a model; True if it was loaded."""
        return self.pool.unload(self.resolve(name).name)

    # --- runtime configuration ----------------------------------------------------------------
    def reconfigure(self, settings: Settings) -> None:
        """Read `settings` from now on and reload every loaded model with them, without a restart: the old
        runner serves until the new one is ready, then finishes its generations and stops."""
        self.settings = settings
        self.schema_limits = SchemaLimits(settings.max_schema_depth, settings.max_schema_repetition,
                                          settings.max_grammar_bytes)
        self.pool.reconfigure(settings)

    def reload_status(self) -> dict:
        """{"state": "idle" | "reloading", "models": {name: "reloading" | "ready" | "failed: <msg>"},
        "generation": configurations applied}."""
        return self.pool.reload_status()

    def wait_for_reload(self, timeout: float) -> bool:
        """Block until no model is reloading (True), or `timeout` seconds pass (False)."""
        return self.pool.wait_for_reload(timeout)

    # --- state --------------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        return bool(self.pool.loading)

    def snapshot(self) -> EngineSnapshot:
        """Loaded models, request counts, loads in progress: an immutable value, safe to keep."""
        return EngineSnapshot(models=self.pool.states(), loading=tuple(self.pool.loading), closing=self._closing,
                              last_record_seq=self.records.last_seq)

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting work and unload every model."""
        self._closing = True
        self.pool.close(timeout)
        self.backend.close()
