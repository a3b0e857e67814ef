"""EngineSnapshot: a typed, immutable view of the engine at one moment, for health, /api/ps and metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class LoadedModelState:
    """One loaded model: its context, when it loaded and expires (wall clock), requests on it."""

    name: str
    context_length: int
    trained_context: int
    loaded_at: float
    expires_at: Optional[float]
    running: int
    waiting: int


@dataclass(frozen=True)
class EngineSnapshot:
    """Loaded models, request counts, models being loaded, and whether the engine is stopping."""

    models: tuple[LoadedModelState, ...]
    loading: tuple[str, ...]
    closing: bool
    last_record_seq: int  # the newest RequestRecord's sequence number

    @property
    def running(self) -> int:
        return sum(model.running for model in self.models)

    @property
    def waiting(self) -> int:
        return sum(model.waiting for model in self.models)
