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
    """One content block; only text is served, the others are refused by name in translate.py."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: Optional[str] = None
    cache_control: Optional[dict] = None
    citations: Optional[list] = None


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
    # Not served yet: declared so that translate.py refuses them by name instead of a generic "extra input".
    tools: Optional[list[Any]] = None
    tool_choice: Optional[dict] = None
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
