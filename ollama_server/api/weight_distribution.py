"""GET/POST/DELETE /api/dashboard/weight-distribution: plan a model's tensor split over the GPUs, apply it."""
from __future__ import annotations

import math
from typing import Any
from typing import Optional

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import PLAIN
from ollama_server.api.errors.handlers import install
from ollama_server.engine import planner
from ollama_server.engine.placement import PlacementOverrides
from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.inspect import ModelInfo
from ollama_server.monitoring.gpu import GpuReader
from ollama_server.monitoring.gpu import GpuSample
from ollama_server.services import services

bp = Blueprint("weight_distribution", __name__)
install(bp, PLAIN)
ROUTE = "/api/dashboard/weight-distribution"


def gpu_reader() -> GpuReader:
    """The app's GpuReader (NVML is touched on its first read only)."""
    return services().gpu


def placements() -> PlacementOverrides:
    """The overrides the engine reads at load time."""
    return services().engine.placements


@bp.get(ROUTE)
def show():
    """The plan for a model on the GPUs as they are now, with the GPUs and the current settings."""
    spec = _model(request.args.get("model"))
    preset = request.args.get("preset") or "balanced"
    _check_preset(preset)
    reserve = _reserve(request.args.get("reserve_mib"))
    cap = _gpu_layers(request.args.get("gpu_layers"), "gpu_layers") if "gpu_layers" in request.args else None
    context = _Context(spec)
    plan = planner.plan_split(context.info.layer_bytes, context.output_bytes, context.kv_bytes, context.free,
                              preset, reserve, max_gpu_layers=cap)
    return jsonify(context.report(plan))


@bp.post(ROUTE)
def apply():
    """Validate a preset or an explicit tensor_split and store it for the model's next load."""
    body = request.get_json(force=True, silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    if "preset" in body and "tensor_split" in body:
        raise ApiError("invalid_request", "give either preset or tensor_split, not both")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError("invalid_request", "model must be a string")
    spec = _model(model)
    reserve = _reserve(body.get("reserve_mib"))
    gpu_layers = _gpu_layers(body["gpu_layers"], "gpu_layers") if body.get("gpu_layers") is not None else None
    context = _Context(spec)
    if "tensor_split" in body:
        split = _tensor_split(body["tensor_split"], len(context.free))
        layers = services().settings.gpu_layers if gpu_layers is None else gpu_layers
        plan = planner.evaluate_split(context.info.layer_bytes, context.output_bytes, context.kv_bytes,
                                      context.free, split, layers, reserve)
        stored = placements().set(spec.name, split, layers, "custom", plan.to_dict())
    else:
        preset = body.get("preset") or "balanced"
        _check_preset(preset)
        plan = planner.plan_split(context.info.layer_bytes, context.output_bytes, context.kv_bytes, context.free,
                                  preset, reserve, max_gpu_layers=gpu_layers)
        stored = placements().set(spec.name, plan.tensor_split, plan.gpu_layers, preset, plan.to_dict())
    report = context.report(plan)
    report["applied"] = stored.to_dict()
    report["applies_on_next_load"] = True
    if report["loaded"]:
        report["message"] = (f"model '{spec.name}' is loaded with its previous placement: unload it or wait for "
                             "keep_alive to expire; the new plan is used on its next load")
    return jsonify(report)


@bp.delete(ROUTE)
def clear():
    """Forget a model's applied plan: its next load uses the settings again."""
    spec = _model(request.args.get("model"))
    return jsonify({"model": spec.name, "cleared": placements().clear(spec.name)})


class _Context:
    """What a plan needs for one model: its layer sizes, KV size, the GPUs now, and the notes about them."""

    def __init__(self, spec: ModelSpec):
        s = services()
        self.spec = spec
        self.info: ModelInfo = s.store.info(spec)
        if not self.info.layer_bytes:
            reason = self.info.error or ("model inspection is off (enable_model_inspection)" if not s.store.inspection
                                         else "it has no per-layer tensors")
            raise ApiError("invalid_request", f"cannot plan model '{spec.name}': {reason}", status=422)
        self.context_length = s.engine.runtime_context(spec)
        self.slots = s.settings.parallel_slots
        self.kv_bytes = planner.kv_bytes_per_layer(self.info, self.context_length, self.slots)
        self.output_bytes = planner.output_layer_bytes(self.info)
        self.reader = gpu_reader()
        self.gpus: list[GpuSample] = self.reader.read()
        self.free = [planner.GpuFree(g.index, 0 if g.lost else g.memory_free_bytes or 0) for g in self.gpus]
        self.loaded = s.engine.loaded_facts(spec.name) is not None

    def notes(self) -> list[str]:
        """Facts about the GPUs and settings that change how the plan should be read."""
        settings = services().settings
        notes = [f"GPU {g.index} is lost ({g.error}): share 0" for g in self.gpus if g.lost]
        if self.loaded and self.gpus:
            notes.append("the model is loaded: free memory already excludes what it holds now")
        if self.gpus and settings.split_mode != "layer":
            notes.append(f"split_mode is '{settings.split_mode}': the per-GPU sizes assume 'layer'")
        return notes

    def report(self, plan: planner.Plan) -> dict[str, Any]:
        """The JSON answer shared by GET and POST."""
        settings = services().settings
        applied = placements().get(self.spec.name)
        out_plan = plan.to_dict()
        out_plan["notes"] = self.notes() + out_plan["notes"]
        return {
            "model": self.spec.name, "context_length": self.context_length, "parallel_slots": self.slots,
            "layers": {"blocks": len(self.info.layer_bytes), "block_bytes": sum(self.info.layer_bytes),
                       "output_layer_bytes": self.output_bytes, "kv_bytes_per_layer": self.kv_bytes},
            "gpus": [g.to_dict() for g in self.gpus],
            "gpu_status": {"available": self.reader.available, "reason": self.reader.reason},
            "plan": out_plan,
            "settings": {"tensor_split": list(settings.tensor_split), "gpu_layers": settings.gpu_layers,
                         "split_mode": settings.split_mode, "main_gpu": settings.main_gpu},
            "applied": applied.to_dict() if applied else None,
            "loaded": self.loaded,
        }


def _model(name: Optional[str]) -> ModelSpec:
    svc = services()
    spec = svc.store.get(name) if name else svc.engine.default_model()
    if spec is None:
        raise ApiError("not_found", f"model '{name}' not found" if name else "no model available")
    return spec


def _check_preset(preset: Any) -> None:
    if preset not in planner.PRESETS:
        raise ApiError("invalid_request", f"unknown preset {str(preset)[:50]!r}: use one of "
                                          f"{', '.join(planner.PRESETS)}")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ApiError("invalid_request", f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError("invalid_request", f"{name} must be a number") from None
    if not math.isfinite(number):
        raise ApiError("invalid_request", f"{name} must be a finite number")
    return number


def _reserve(value: Any) -> int:
    if value is None:
        return planner.DEFAULT_RESERVE_BYTES
    mib = _number(value, "reserve_mib")
    if mib < 0:
        raise ApiError("invalid_request", "reserve_mib must not be negative")
    return int(mib * planner.MIB)


def _gpu_layers(value: Any, name: str) -> int:
    number = _number(value, name)
    if number != int(number) or number < -1:
        raise ApiError("invalid_request", f"{name} must be an integer of at least -1 (-1: all)")
    return int(number)


def _tensor_split(value: Any, gpu_count: int) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ApiError("invalid_request", "tensor_split must be a list of numbers, one per GPU")
    shares = tuple(_number(item, "each tensor_split entry") for item in value)
    if any(share < 0 for share in shares):
        raise ApiError("invalid_request", "tensor_split entries must not be negative")
    if gpu_count == 0:
        raise ApiError("invalid_request", "no GPU detected: there is nothing to split across")
    if len(shares) != gpu_count:
        raise ApiError("invalid_request", f"tensor_split has {len(shares)} entries but {gpu_count} GPUs are present")
    if sum(shares) <= 0:
        raise ApiError("invalid_request", "at least one tensor_split entry must be positive")
    return shares
