"""Pydantic models of the TGI request bodies: types only; TGI's value rules live in translate.validate."""
from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Optional

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

# NaN and infinities would slip past every `<= 0` style check, so they are type errors here.
Finite = Annotated[float, Field(allow_inf_nan=False)]
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Grammar(_Open):
    """`{"type": "json" | "json_schema" | "regex", "value": ...}`."""

    type: str
    value: Any = None


class Parameters(_Open):
    """TGI `GenerateParameters`; every field may be absent or null, as huggingface_hub sends them."""

    best_of: Optional[int] = None
    temperature: Optional[Finite] = None
    repetition_penalty: Optional[Finite] = None
    frequency_penalty: Optional[Finite] = None
    top_k: Optional[int] = None
    top_p: Optional[Finite] = None
    typical_p: Optional[Finite] = None
    do_sample: Optional[bool] = None
    max_new_tokens: Optional[int] = None
    return_full_text: Optional[bool] = None
    stop: Optional[list[str]] = None
    truncate: Optional[int] = None
    watermark: Optional[bool] = None
    details: Optional[bool] = None
    decoder_input_details: Optional[bool] = None
    seed: Optional[U64] = None
    top_n_tokens: Optional[int] = None
    grammar: Optional[Grammar] = None
    adapter_id: Optional[str] = None
    model: Optional[str] = None  # extension: pick a model per request


class GenerateBody(_Open):
    """`{"inputs", "parameters", "stream"}` for /generate, /generate_stream and POST /."""

    inputs: str
    parameters: Optional[Parameters] = None
    stream: Optional[bool] = None
    model: Optional[str] = None  # extension, same as parameters.model
