"""Pydantic models of the OpenAI request bodies we accept (unknown keys are allowed, as the SDK sends extras)."""
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


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: Literal["text"]
    text: str


class ImagePart(_Open):
    type: Literal["image_url"]
    image_url: dict


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[Union[TextPart, ImagePart]], None] = None
    name: Optional[str] = None
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: Optional[list[dict]] = None  # assistant turns (checked in tools.py)
    tool_call_id: Optional[str] = None  # tool turns


class StreamOptions(_Open):
    include_usage: bool = False


class StructuredOutputs(_Open):
    """vLLM's `structured_outputs`: one of json / regex / choice / grammar / json_object (others are refused)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    json_schema: Union[dict, str, None] = Field(None, alias="json")  # `json` would shadow BaseModel.json
    regex: Optional[str] = None
    choice: Optional[Annotated[list[str], Field(min_length=1)]] = None
    grammar: Optional[str] = None
    json_object: Optional[bool] = None
    disable_fallback: Optional[bool] = None  # which implementation, not what it allows: accepted


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Stop = Union[str, Annotated[list[str], Field(max_length=16)], None]


MAX_CHOICES = 8


class _Sampling(_Open):
    model: Optional[str] = None
    temperature: Optional[Annotated[float, Field(ge=0.0, le=2.0)]] = None
    top_p: Optional[Annotated[float, Field(gt=0.0, le=1.0)]] = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    stop: Stop = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    seed: Optional[Annotated[int, Field(ge=0, lt=2**63)]] = None
    presence_penalty: Optional[Penalty] = None
    frequency_penalty: Optional[Penalty] = None
    user: Optional[str] = None
    # vLLM sampling extras (sent by the SDK through extra_body)
    top_k: Optional[Annotated[int, Field(ge=-1)]] = None
    min_p: Optional[Probability] = None
    repetition_penalty: Optional[Annotated[float, Field(gt=0.0, le=10.0)]] = None
    min_tokens: Annotated[int, Field(ge=0)] = 0
    ignore_eos: bool = False
    stop_token_ids: Optional[Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=64)]] = None
    include_stop_str_in_output: bool = False
    # Constrained output (translate.constraint_of): vLLM's guided_* and structured_outputs, llama-server's
    # grammar and json_schema, OpenAI's response_format. Declared so that none is dropped as an unknown extra.
    response_format: Optional[dict] = None
    guided_json: Union[dict, str, None] = None
    guided_regex: Optional[str] = None
    guided_choice: Optional[Annotated[list[str], Field(min_length=1)]] = None
    guided_grammar: Optional[str] = None
    guided_decoding_backend: Optional[str] = None  # picks vLLM's implementation, not the constraint: accepted
    guided_whitespace_pattern: Optional[str] = None  # refused: our JSON grammars fix their whitespace
    structural_tag: Optional[Union[dict, str]] = None  # refused: no structural tags here
    structured_outputs: Optional[StructuredOutputs] = None
    grammar: Optional[str] = None  # llama-server: GBNF
    json_schema: Optional[dict] = None  # llama-server: a JSON schema


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    max_completion_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[Annotated[int, Field(ge=0, le=20)]] = None
    # Tool calling (tools.py); the legacy functions / function_call are declared only to be refused.
    tools: Optional[list[dict]] = None
    tool_choice: Union[str, dict, None] = None
    parallel_tool_calls: Optional[bool] = None
    functions: Optional[list] = None
    function_call: Union[str, dict, None] = None
    # Thinking control (translate.thinking_fields): openai-python's ReasoningEffort and vLLM's template kwargs.
    reasoning_effort: Optional[Literal["none", "minimal", "low", "medium", "high", "xhigh"]] = None
    chat_template_kwargs: Optional[dict[str, Any]] = None


PromptTokens = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class CompletionRequest(_Sampling):
    prompt: Union[str, Annotated[list[str], Field(min_length=1)], PromptTokens,
                  Annotated[list[PromptTokens], Field(min_length=1)]]
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = 16
    echo: bool = False
    logprobs: Optional[Annotated[int, Field(ge=0, le=20)]] = None
    suffix: Optional[str] = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _some_prompt(cls, value):
        # vLLM's wording and check (parse_and_batch_prompt), before the union's four confusing errors.
        if isinstance(value, list) and (not value or any(isinstance(p, list) and not p for p in value)):
            raise ValueError("please provide at least one prompt")
        return value


class TokenizeRequest(_Open):
    """vLLM /tokenize: a prompt, or chat messages rendered with the model's template."""

    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[Annotated[list[ChatMessage], Field(min_length=1)]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    tools: Optional[list[dict]] = None  # rendered into the prompt as a chat request would have them


class DetokenizeRequest(_Open):
    """vLLM /detokenize."""

    model: Optional[str] = None
    tokens: list[Annotated[int, Field(ge=0)]]
