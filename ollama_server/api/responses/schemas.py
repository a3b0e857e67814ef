"""Pydantic model of the POST /v1/responses body (unknown keys are refused, as OpenAI does)."""
from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal
from typing import Optional
from typing import Union

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator


class _Closed(BaseModel):
    # OpenAI answers an unknown parameter with a 400: nothing is dropped unseen.
    model_config = ConfigDict(extra="forbid")


class ReasoningConfig(_Closed):
    effort: Optional[Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]] = None
    summary: Optional[Literal["auto", "concise", "detailed"]] = None
    generate_summary: Optional[Literal["auto", "concise", "detailed"]] = None
    # Not served: declared so that translate.py refuses them by name.
    context: Optional[Any] = None
    mode: Optional[Any] = None


class TextConfig(_Closed):
    format: Optional[dict] = None
    verbosity: Optional[Literal["low", "medium", "high"]] = None


class StreamOptions(_Closed):
    include_obfuscation: Optional[bool] = None


class ResponsesRequest(_Closed):
    """POST /v1/responses."""

    model: Optional[str] = None
    # Items stay plain dicts: translate.py reads them one by one so that each error names its index.
    input: Union[str, list[dict], None] = None
    instructions: Optional[str] = None
    max_output_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    temperature: Optional[Annotated[float, Field(ge=0.0, le=2.0)]] = None
    top_p: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    stream: Optional[bool] = None
    stream_options: Optional[StreamOptions] = None
    previous_response_id: Optional[Annotated[str, Field(min_length=1)]] = None
    store: Optional[bool] = None
    reasoning: Optional[ReasoningConfig] = None
    text: Optional[TextConfig] = None
    metadata: Optional[dict[str, str]] = None
    include: Optional[list[str]] = None
    truncation: Optional[Literal["auto", "disabled"]] = None
    # Identifiers and hints that change nothing here: echoed back, honoured trivially.
    user: Optional[str] = None
    safety_identifier: Optional[str] = None
    prompt_cache_key: Optional[str] = None
    service_tier: Optional[Literal["auto", "default", "flex", "scale", "priority"]] = None
    # Function tools (tools.py reads them one by one so that each error names its place).
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Union[str, dict]] = None
    parallel_tool_calls: Optional[bool] = None
    max_tool_calls: Optional[int] = None
    # Not served: declared so that translate.py refuses them by name instead of a generic "extra input".
    top_logprobs: Optional[int] = None
    background: Optional[bool] = None
    background_options: Optional[Any] = None
    conversation: Optional[Any] = None
    prompt: Optional[Any] = None
    context_management: Optional[Any] = None
    moderation: Optional[Any] = None
    image: Optional[Any] = None
    access_programs: Optional[Any] = None
    prompt_cache_options: Optional[Any] = None
    prompt_cache_retention: Optional[Literal["in_memory", "24h"]] = None

    @field_validator("input", mode="before")
    @classmethod
    def _string_or_items(cls, value: Any) -> Any:
        # One clear message instead of the union's several.
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError("Input should be a string or a list of input items")
        if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            raise ValueError("every input item must be an object")
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _string_or_object(cls, value: Any) -> Any:
        # One clear message instead of the union's several.
        if value is not None and not isinstance(value, (str, dict)):
            raise ValueError("tool_choice should be 'none', 'auto', 'required' or a tool choice object")
        return value
