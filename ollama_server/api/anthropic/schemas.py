"""Pydantic models of the Anthropic Messages request bodies (unknown keys are refused, as Anthropic does)."""
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

MAX_STOP_SEQUENCES = 16  # the OpenAI dialect's bound: each one is matched on every streamed piece


class _Closed(BaseModel):
    # Anthropic answers an unknown key with "Extra inputs are not permitted": nothing is dropped unseen.
    model_config = ConfigDict(extra="forbid")


class ContentBlock(BaseModel):
    """One content block: text, tool_use and tool_result are served, the others are refused by name in translate.py."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: Optional[str] = None
    cache_control: Optional[dict] = None
    citations: Optional[list] = None
    # tool_use (assistant turns)
    id: Optional[str] = None
    name: Optional[str] = None
    input: Optional[Any] = None
    # tool_result (user turns); content is checked in tools.py so that its errors name the block
    tool_use_id: Optional[str] = None
    content: Optional[Any] = None
    is_error: Optional[bool] = None


class SystemBlock(_Closed):
    type: Literal["text"]
    text: str
    cache_control: Optional[dict] = None
    citations: Optional[list] = None


class MessageParam(_Closed):
    role: Literal["user", "assistant"]
    content: Union[str, list[ContentBlock]]

    @field_validator("content", mode="before")
    @classmethod
    def _string_or_blocks(cls, value: Any) -> Any:
        # One clear message instead of the union's two ("content.str: ...", "content.list[...]: ...").
        if not isinstance(value, (str, list)):
            raise ValueError("Input should be a string or a list of content blocks")
        return value


class ToolParam(BaseModel):
    """A client tool; server tools (other `type`s) and unknown keys are refused by name in tools.py."""

    # Open so that a server tool is refused for its type, not for the first of its own fields.
    model_config = ConfigDict(extra="allow")
    name: str
    input_schema: Optional[dict] = None
    description: Optional[str] = None
    type: Optional[str] = None
    cache_control: Optional[dict] = None
    strict: Optional[bool] = None
    eager_input_streaming: Optional[bool] = None
    # Not served: declared so that tools.py refuses them by name.
    input_examples: Optional[Any] = None
    allowed_callers: Optional[Any] = None
    defer_loading: Optional[bool] = None


class ToolChoice(_Closed):
    """auto | any | tool (with name) | none; the fields that do not belong to the type are refused in tools.py."""

    type: Literal["auto", "any", "tool", "none"]
    name: Optional[str] = None
    disable_parallel_tool_use: Optional[bool] = None


class ThinkingConfig(_Closed):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Optional[int] = None
    display: Optional[Literal["summarized", "omitted"]] = None


class Metadata(_Closed):
    user_id: Optional[str] = None


class _Prompt(_Closed):
    """What a Messages request and a token count share."""

    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: Union[str, list[SystemBlock], None] = None
    thinking: Optional[ThinkingConfig] = None
    tools: Optional[list[ToolParam]] = None
    tool_choice: Optional[ToolChoice] = None
    # Not served: declared so that translate.py refuses them by name instead of a generic "extra input".
    mcp_servers: Optional[Any] = None
    context_management: Optional[Any] = None
    output_format: Optional[Any] = None
    output_config: Optional[Any] = None
    container: Optional[Any] = None

    @field_validator("system", mode="before")
    @classmethod
    def _system_string_or_blocks(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, (str, list)):
            raise ValueError("Input should be a string or a list of text blocks")
        return value


class MessagesRequest(_Prompt):
    """POST /v1/messages."""

    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: Optional[Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)]] = None
    stream: bool = False
    temperature: Optional[Annotated[float, Field(ge=0.0, le=1.0)]] = None
    top_p: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    top_k: Optional[Annotated[int, Field(ge=0)]] = None
    metadata: Optional[Metadata] = None
    # One local tier: both values mean the same here, so honouring them costs nothing.
    service_tier: Optional[Literal["auto", "standard_only"]] = None
    # Prompt caching: the engine reuses a cached prompt prefix on its own, so the hint is always honoured.
    cache_control: Optional[dict] = None
    inference_geo: Optional[Any] = None
    speed: Optional[Any] = None
    diagnostics: Optional[Any] = None
    user_profile_id: Optional[Any] = None
    workspace_id: Optional[Any] = None


class CountTokensRequest(_Prompt):
    """POST /v1/messages/count_tokens."""
