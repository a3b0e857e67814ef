"""Per-model placement overrides: a tensor_split and gpu_layers chosen at run time, used on the model's next load."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Optional


@dataclass(frozen=True)
class Placement:
    """Where one model's layers go on its next load, and where that choice came from."""

    model: str
    tensor_split: tuple[float, ...]
    gpu_layers: int                   # llama.cpp n_gpu_layers (-1: all, 0: CPU only)
    preset: str = "custom"
    set_at: float = 0.0
    plan: dict[str, Any] = field(default_factory=dict, compare=False)  # the plan it was applied from, for display

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["tensor_split"] = list(self.tensor_split)
        return out


class PlacementOverrides:
    """Thread-safe model name -> Placement map, kept in memory (the engine consults it when it loads a model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_model: dict[str, Placement] = {}

    def set(self, model_name: str, tensor_split: tuple[float, ...] | list[float], gpu_layers: int,
            preset: str = "custom", plan: Optional[dict[str, Any]] = None) -> Placement:
        """Store the placement for a model (replacing any earlier one) and return it."""
        placement = Placement(model=model_name, tensor_split=tuple(float(x) for x in tensor_split),
                              gpu_layers=int(gpu_layers), preset=preset, set_at=time.time(), plan=dict(plan or {}))
        with self._lock:
            self._by_model[model_name] = placement
        return placement

    def get(self, model_name: str) -> Optional[Placement]:
        """The placement stored for a model, or None (use the settings)."""
        with self._lock:
            return self._by_model.get(model_name)

    def clear(self, model_name: str) -> bool:
        """Forget a model's placement; True if there was one."""
        with self._lock:
            return self._by_model.pop(model_name, None) is not None
