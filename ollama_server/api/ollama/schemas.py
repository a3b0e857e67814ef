"""Pydantic models of the Ollama request bodies (unknown keys are kept and ignored, as Ollama does)."""
from __future__ import annotations

import math
import re
from typing import Annotated
from typing import Any
from typing import Optional

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

THINK_LEVELS = ("low", "medium", "high", "max")
ROLES = ("system", "user", "assistant", "tool")
FOREVER = -1.0  # keep_alive after parsing: negative means "never unload"
NUM_PREDICT_FILL_CONTEXT = -2  # the lowest num_predict Ollama gives a meaning

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")


def parse_duration(text: str) -> float:
    """Seconds for a Go duration string ("5m", "1h30m", "-1s", "0"); a bare number counts as seconds."""
    value = text.strip()
    if _PLAIN_NUMBER.match(value):
        return float(value)
    sign = -1.0 if value.startswith("-") else 1.0
    body = value[1:] if value[:1] in "+-" else value
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def _keep_alive(value: Any) -> Any:
    """A number of seconds or a duration string -> seconds; any negative becomes FOREVER."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("keep_alive must be a number of seconds or a duration string such as \"5m\"")
    seconds = parse_duration(value) if isinstance(value, str) else float(value)
    if not math.isfinite(seconds):
        raise ValueError("keep_alive must be finite")
    return FOREVER if seconds < 0 else seconds


def _whole_number(value: Any) -> Any:
    """Ollama reads integer options from any JSON number (16.0 -> 16); strings stay errors."""
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Int = Annotated[int, BeforeValidator(_whole_number)]
KeepAlive = Annotated[Optional[float], BeforeValidator(_keep_alive)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Options(_Open):
    """Ollama's `options`: the ones the engine uses, then those accepted (type-checked) but ignored."""

    num_predict: Optional[Int] = None
    num_ctx: Optional[Int] = None
    temperature: Optional[float] = None
    top_k: Optional[Int] = None
    top_p: Optional[float] = None
    min_p: Optional[float] = None
    repeat_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    seed: Optional[Int] = None
    stop: Optional[list[str]] = None
    # Accepted for compatibility; llama.cpp settings here are per server, not per request.
    num_keep: Optional[Int] = None
    typical_p: Optional[float] = None
    repeat_last_n: Optional[Int] = None
    num_batch: Optional[Int] = None
    num_gpu: Optional[Int] = None
    main_gpu: Optional[Int] = None
    use_mmap: Optional[bool] = None
    num_thread: Optional[Int] = None

    @field_validator("num_predict", mode="after")
    @classmethod
    def _num_predict(cls, value: Optional[int]) -> Optional[int]:
        # Ollama gives -1 (no limit) and -2 (fill the context) a meaning; any other negative is a typo,
        # not "run to the end of the context". 0 stays "no limit", as in Ollama (only a positive
        # num_predict is a limit there).
        if value is not None and value < NUM_PREDICT_FILL_CONTEXT:
            raise ValueError(f"num_predict must be -1 (no limit), -2 (fill the context), 0 or a positive "
                             f"number of tokens, not {value}")
        return value


IGNORED_OPTIONS = ("num_keep", "typical_p", "repeat_last_n", "num_batch", "num_gpu", "main_gpu", "use_mmap",
                   "num_thread")


class _Common(_Open):
    """Fields /api/generate and /api/chat share."""

    model: Optional[str] = None
    stream: Optional[bool] = None  # None: Ollama's default, true
    format: Any = None
    keep_alive: KeepAlive = None
    options: Optional[Options] = None
    think: Any = None
    truncate: Optional[bool] = None
    shift: Optional[bool] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[Annotated[Int, Field(ge=0, le=20)]] = None

    @field_validator("format", mode="after")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is None or value == "" or value == "json" or isinstance(value, dict):
            return value
        raise ValueError('format must be "json" or a JSON schema object')

    @field_validator("think", mode="after")
    @classmethod
    def _think(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool) or value in THINK_LEVELS:
            return value
        raise ValueError(f"think must be true, false or one of {', '.join(THINK_LEVELS)}")


class GenerateBody(_Common):
    """POST /api/generate."""

    prompt: Optional[str] = None
    suffix: Optional[str] = None
    system: Optional[str] = None
    template: Optional[str] = None
    context: Optional[list[int]] = None
    raw: bool = False
    images: Optional[list[str]] = None


class ChatMessage(_Open):
    """One message of /api/chat; the role is lower-cased as Ollama does."""

    role: Annotated[str, BeforeValidator(_lower)]
    content: Optional[str] = None
    thinking: Optional[str] = None
    images: Optional[list[str]] = None
    tool_calls: Optional[list[dict]] = None
    tool_name: Optional[str] = None
    tool_call_id: Optional[str] = None

    @field_validator("role", mode="after")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return value


class ChatBody(_Common):
    """POST /api/chat."""

    messages: Optional[list[ChatMessage]] = None
    tools: Optional[list[dict]] = None


class ShowBody(_Open):
    """POST /api/show (`name` is the legacy spelling of `model`)."""

    model: Optional[str] = None
    name: Optional[str] = None
    verbose: bool = False
