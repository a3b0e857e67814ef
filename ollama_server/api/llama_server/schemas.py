"""Pydantic model of llama-server's /infill body (unknown keys are kept, as llama-server ignores them)."""
from __future__ import annotations

from typing import Annotated
from typing import Optional
from typing import Union

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ExtraChunk(_Open):
    """One other file of the repository, for context."""

    filename: str = "tmp"
    text: str = ""


# llama-server fields with a meaning we cannot give here: refused with a 400 naming them, never ignored.
UNSUPPORTED = ("n_probs", "logit_bias", "mirostat", "mirostat_tau", "mirostat_eta", "typical_p", "dry_multiplier",
               "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers", "xtc_probability",
               "xtc_threshold", "samplers", "lora", "n_indent", "t_max_predict_ms", "n_discard", "n_keep")


class InfillBody(_Open):
    """POST /infill."""

    model: Optional[str] = None
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: Annotated[list[ExtraChunk], Field(max_length=256)] = []
    prompt: str = ""
    n_predict: Annotated[int, Field(ge=-1)] = -1
    temperature: Optional[Annotated[float, Field(ge=0.0, le=10.0)]] = None
    top_k: Optional[Annotated[int, Field(ge=0)]] = None
    top_p: Optional[Annotated[float, Field(ge=0.0, le=1.0)]] = None
    min_p: Optional[Annotated[float, Field(ge=0.0, le=1.0)]] = None
    repeat_penalty: Optional[Annotated[float, Field(gt=0.0, le=10.0)]] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    seed: Optional[int] = None  # -1: random
    stop: Union[str, list[str], None] = None
    ignore_eos: bool = False
    stream: bool = False
    return_tokens: bool = False
    grammar: Optional[str] = None
    json_schema: Optional[dict] = None
    # Hints about llama-server's own slots and cache, which have no meaning to give here: accepted.
    cache_prompt: Optional[bool] = None
    id_slot: Optional[int] = None
