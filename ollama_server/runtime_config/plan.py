"""Weight distribution of a model under candidate tunables: the planner fed from the store and the GPU reader."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Optional
from typing import Sequence

from ollama_server.engine import planner
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.inspect import ModelInfo
from ollama_server.models.store import ModelStore
from ollama_server.monitoring.gpu import GpuSample


class PlanUnavailable(Exception):
    """No plan can be made for the model (no model, inspection off, no per-layer tensors)."""


@dataclass(frozen=True)
class ModelLayout:
    """What a plan needs of one model: its layer sizes, output layer and trained context."""

    spec: ModelSpec
    info: ModelInfo
    output_bytes: int
    trained_context: Optional[int]

    def context(self, wanted: int) -> int:
        """The context a load would get: `wanted` capped by the trained context (as the engine's pool does)."""
        return min(wanted, self.trained_context or wanted)

    def kv_bytes(self, context: int, slots: int) -> int:
        """KV cache bytes per block for `slots` sequences of `context` tokens."""
        return planner.kv_bytes_per_layer(self.info, context, slots)


def layout_of(store: ModelStore, spec: Optional[ModelSpec]) -> ModelLayout:
    """The layout of `spec`; PlanUnavailable saying why when it cannot be planned."""
    if spec is None:
        raise PlanUnavailable("no model available")
    info = store.info(spec)
    if not info.layer_bytes:
        reason = info.error or ("model inspection is off (enable_model_inspection)" if not store.inspection
                                else "it has no per-layer tensors")
        raise PlanUnavailable(f"cannot plan model '{spec.name}': {reason}")
    return ModelLayout(spec, info, planner.output_layer_bytes(info), info.context_length)


def free_of(gpus: Sequence[GpuSample]) -> list[planner.GpuFree]:
    """The planner's view of the GPUs: a lost one has no free memory."""
    return [planner.GpuFree(g.index, 0 if g.lost else g.memory_free_bytes or 0) for g in gpus]


def preset_split(layout: ModelLayout, gpus: Sequence[GpuSample], split_preset: str, context_size: int,
                 slots: int, gpu_layers: int) -> tuple[float, ...]:
    """The tensor split the planner's `split_preset` gives the model with that context and slot count."""
    context = layout.context(context_size)
    plan = planner.plan_split(layout.info.layer_bytes, layout.output_bytes, layout.kv_bytes(context, slots),
                              free_of(gpus), split_preset, max_gpu_layers=gpu_layers)
    return plan.tensor_split


def distribution(layout: ModelLayout, gpus: Sequence[GpuSample], values: dict[str, Any]) -> dict[str, Any]:
    """Per GPU {index, name, layers, bytes, gib} and the CPU's layers, as llama.cpp would place the model under
    `values` (the tunables by seed name); an empty tensor_split is llama.cpp's default, shares by free memory."""
    free = free_of(gpus)
    context = layout.context(values["context_size"])
    split = values["tensor_split"] or [g.free_bytes for g in free]
    plan = planner.evaluate_split(layout.info.layer_bytes, layout.output_bytes,
                                  layout.kv_bytes(context, values["parallel_slots"]), free, split,
                                  values["gpu_layers"])
    rows = [{"index": g.index, "name": g.name, "layers": layers, "bytes": placed,
             "gib": round(placed / planner.GIB, 3)}
            for g, layers, placed in zip(gpus, plan.layers_per_gpu, plan.bytes_per_gpu)]
    notes = [f"GPU {g.index} is lost ({g.error}): share 0" for g in gpus if g.lost] + list(plan.notes)
    return {"model": layout.spec.name, "context_length": context, "parallel_slots": values["parallel_slots"],
            "gpus": rows, "cpu_layers": plan.layer_count - plan.gpu_layers, "gpu_layers": plan.gpu_layers,
            "layer_count": plan.layer_count, "tensor_split": list(plan.tensor_split), "fits": plan.fits,
            "notes": notes}
