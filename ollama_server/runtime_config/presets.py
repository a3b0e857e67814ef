"""Named bundles of the runtime tunables; each preset's tensor split comes from the planner's preset of its choice."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_server.engine import planner


@dataclass(frozen=True)
class Preset:
    """Concrete values for the tunables, and the planner preset (planner.PRESETS) that spreads the weights."""

    name: str
    description: str
    gpu_layers: int
    context_size: int
    batch_size: int
    threads: int
    parallel_slots: int
    split_preset: str

    def values(self) -> dict[str, Any]:
        """The tunables this preset sets, by seed name (tensor_split is planned separately)."""
        return {"gpu_layers": self.gpu_layers, "context_size": self.context_size, "batch_size": self.batch_size,
                "threads": self.threads, "parallel_slots": self.parallel_slots}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for listings."""
        return {"name": self.name, "description": self.description, "split_preset": self.split_preset,
                "values": self.values()}


PRESETS: dict[str, Preset] = {p.name: p for p in (
    # Throughput: big batches, many slots; the first GPUs filled first, so a token crosses the fewest cards.
    Preset("high_performance", "every layer on the GPUs, large batches, 8 parallel requests, 8K context",
           gpu_layers=-1, context_size=8192, batch_size=1024, threads=0, parallel_slots=8, split_preset="priority"),
    # The shipped defaults' sizes; shares in proportion to free memory leave every card equally full.
    Preset("balanced", "every layer on the GPUs, the default batch, 4 parallel requests, 4K context",
           gpu_layers=-1, context_size=4096, batch_size=512, threads=0, parallel_slots=4, split_preset="balanced"),
    # Least memory: one request at a time, small batches and KV cache, the most headroom left on each card.
    Preset("conservative", "every layer on the GPUs, small batches, 1 request at a time, 2K context",
           gpu_layers=-1, context_size=2048, batch_size=256, threads=0, parallel_slots=1, split_preset="balanced"),
)}

assert all(p.split_preset in planner.PRESETS for p in PRESETS.values()), "a preset names an unknown planner preset"
