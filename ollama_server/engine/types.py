"""Internal request and result types shared by the engine and every API dialect."""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Iterable
from typing import Mapping
from typing import Optional


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made (or made earlier, in the history); arguments as JSON text."""

    name: str
    arguments: str = "{}"
    id: str = ""


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: Optional[dict] = None


@dataclass(frozen=True)
class Message:
    """One chat turn; an assistant turn may carry tool calls, a tool turn answers one."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: Optional[str] = None
    name: Optional[str] = None  # the tool's name on a tool turn


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen; None means the engine's default."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    json_schema: Optional[dict] = None  # constrain output to JSON ({} = any JSON object)
    schema_field: str = "response_format"  # the request field that carried the constraint, for error messages
    # At most one of json_schema / regex / choice / grammar; the engine turns it into a checked GBNF grammar.
    regex: Optional[str] = None  # the output must match this regular expression (engine/regex_grammar.py's subset)
    choice: Optional[tuple[str, ...]] = None  # the output must be exactly one of these strings
    grammar: Optional[str] = None  # the output must follow this GBNF grammar (start rule `root`)


@dataclass(frozen=True)
class Infill:
    """A fill-in-the-middle request: text before and after the gap, other files for context (engine/infill.py)."""

    prefix: str
    suffix: str
    prompt: str = ""  # llama-server's `prompt`: typed after the prefix, just before the gap
    extra: tuple[tuple[str, str], ...] = ()  # (filename, text) of other files, llama-server's input_extra
    field: str = "suffix"  # the request field errors name


@dataclass(frozen=True)
class GenerateRequest:
    """A dialect-neutral generation request: chat messages, a prompt, or prompt token ids."""

    model: Optional[str]
    prompt: Optional[str] = None
    messages: Optional[tuple[Message, ...]] = None
    prompt_tokens: Optional[tuple[int, ...]] = None
    max_tokens: Optional[int] = None
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str: bool = False      # keep the matched stop string in the text (vLLM)
    ignore_eos: bool = False
    logprobs: Optional[int] = None      # None: none; n: chosen token's logprob plus the top n
    split_thinking: bool = False        # move <think>...</think> into Chunk.reasoning
    sampling: SamplingParams = field(default_factory=SamplingParams)
    num_ctx: Optional[int] = None
    cap_to_context: bool = False        # max_tokens beyond the context: shorten instead of rejecting
    add_special: bool = True
    dialect: str = "internal"
    endpoint: str = ""
    # Tool calling (engine/tool_calls.py): "auto" offers the tools and parses calls from the output; "required"
    # forces a call by grammar (of `tool_name` only, when set); "none" neither offers nor parses.
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"
    tool_name: Optional[str] = None
    parallel_tool_calls: bool = True
    # Thinking control (chat_format.template_variables): None leaves the template's default; False asks for no
    # thinking; True or a level ("low", "medium", "high", ...) asks for it. `think_field` names it in errors.
    think: Optional[bool | str] = None
    think_field: str = "think"
    template_vars: Mapping[str, Any] = field(default_factory=dict)  # more chat template variables (vLLM's kwargs)
    infill: Optional[Infill] = None  # fill-in-the-middle: the prompt is built from the model's FIM tokens
    background: bool = False  # a job's request: waiting interactive requests get a free slot first


@dataclass(frozen=True)
class Usage:
    """Token counts and timings of one generation; durations in seconds."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    draft_tokens: int = 0           # speculative decoding: tokens drafted and verified
    accepted_draft_tokens: int = 0  # ... of which the model kept
    queue_s: float = 0.0
    load_s: float = 0.0
    prompt_eval_s: float = 0.0
    eval_s: float = 0.0
    total_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and the most likely alternatives."""

    token: int
    text: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of output: new text and tokens; the last chunk carries finish_reason and usage."""

    text: str = ""
    token_ids: tuple[int, ...] = ()
    reasoning: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: Optional[str] = None  # "stop" | "length" | "cancelled"
    stop_kind: Optional[str] = None      # "eos" | "stop_sequence" | "length" on the last chunk
    stop_match: Optional[str | int] = None  # the stop string or stop token id that ended it
    usage: Optional[Usage] = None
    seed: Optional[int] = None
    tool_calls: tuple[ToolCall, ...] = ()  # complete calls parsed from the output (never partial)


@dataclass(frozen=True)
class GenerateResult:
    """A whole generation, gathered from its chunks."""

    model: str
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    stop_kind: str
    usage: Usage
    reasoning: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    stop_match: Optional[str | int] = None
    seed: Optional[int] = None
    tool_calls: tuple[ToolCall, ...] = ()


def collect(model: str, chunks: Iterable[Chunk]) -> GenerateResult:
    """Gather streamed chunks into one result (the non-streaming path)."""
    texts: list[str] = []
    reasoning: list[str] = []
    tokens: list[int] = []
    logprobs: list[TokenLogprob] = []
    calls: list[ToolCall] = []
    last = Chunk(finish_reason="stop", stop_kind="eos", usage=Usage())
    for chunk in chunks:
        texts.append(chunk.text)
        reasoning.append(chunk.reasoning)
        tokens.extend(chunk.token_ids)
        logprobs.extend(chunk.logprobs)
        calls.extend(chunk.tool_calls)
        if chunk.finish_reason is not None:
            last = chunk
    return GenerateResult(model, "".join(texts), tuple(tokens), last.finish_reason or "stop",
                          last.stop_kind or last.finish_reason or "eos", last.usage or Usage(),
                          "".join(reasoning), tuple(logprobs), last.stop_match, last.seed, tuple(calls))


class EngineError(Exception):
    """Base of the errors the engine reports to adapters."""

    kind = "internal"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequestError(EngineError):
    """The request cannot be served as asked (bad value, too long for the context)."""

    kind = "invalid_request"


class ContextLengthError(InvalidRequestError):
    """Prompt plus requested tokens do not fit the model's context window."""

    def __init__(self, message: str, *, prompt_tokens: int, context_length: int, max_tokens: int | None):
        super().__init__(message, param="messages", code="context_length_exceeded")
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        self.max_tokens = max_tokens


class CapabilityError(InvalidRequestError):
    """The model cannot do what was asked (thinking, insert); named once the engine knows the model."""

    def __init__(self, capability: str, *, param: str | None = None, detail: str = "", model: str = ""):
        self.capability, self.detail, self.model = capability, detail, model
        shown = f'"{model}"' if model else "the model"
        super().__init__(f"{shown} does not support {capability}{detail}", param=param)

    def named(self, model: str) -> "CapabilityError":
        """The same error, naming the model."""
        return CapabilityError(self.capability, param=self.param, detail=self.detail, model=model)


class ModelNotFoundError(EngineError):
    """No model by that name."""

    kind = "not_found"

    def __init__(self, model: str):
        super().__init__(f"model '{model}' not found", param="model", code="model_not_found")
        self.model = model


class ModelLoadError(EngineError):
    """The model exists but could not be loaded."""

    kind = "load_failed"


class BusyError(EngineError):
    """The wait queue is full; try again later."""

    kind = "busy"

    def __init__(self, message: str = "server busy, please try again.  maximum pending requests exceeded",
                 retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(EngineError):
    """The engine is shutting down or not ready."""

    kind = "unavailable"


class RequestTimeoutError(EngineError):
    """The request ran past request_timeout."""

    kind = "timeout"
