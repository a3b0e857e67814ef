"""Weight distribution: which layers go to which GPU (llama.cpp layer split), from free memory and layer sizes.

Pure arithmetic: no NVML, no Flask, no llama.cpp. The model is seen the way llama.cpp's loader sees it
(`src/llama-model.cpp`, `load_tensors`): `n_layer` repeating blocks plus one *output layer* make
`n_layer + 1` slots; `n_gpu_layers = g` puts the **last** g slots on GPUs (so the output layer goes
first); the input embeddings always stay on the CPU; a tied output (no `output.weight`) is a copy of
`token_embd` on the output layer's device; each offloaded block keeps its KV cache on its own GPU; and
slot `i` of the g goes to the device whose cumulative, normalised `tensor_split` is the first above i/g.
"""
from __future__ import annotations

import bisect
import math
import struct
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Optional
from typing import Sequence

MIB = 1024 ** 2
GIB = 1024 ** 3
# Per-GPU headroom for the CUDA context and compute buffers; llama.cpp's own --fit-target margin is 1024 MiB.
DEFAULT_RESERVE_BYTES = 1024 * MIB
KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default cache type is f16
PRESETS = ("balanced", "equal", "priority")
NO_GPU_NOTE = "no GPU detected: the model runs on the CPU"
_INPUT_TENSORS = ("token_embd.", "token_embd_norm.", "token_types.", "position_embd.")


@dataclass(frozen=True)
class GpuFree:
    """A GPU as the planner sees it: its NVML index and free memory in bytes."""

    index: int
    free_bytes: int


@dataclass(frozen=True)
class Plan:
    """Where a model's layers go: `tensor_split` and `gpu_layers` are what llama.cpp is given."""

    preset: str
    tensor_split: tuple[float, ...]   # per GPU, device order, sums to 1 (empty when nothing is offloaded)
    layers_per_gpu: tuple[int, ...]   # slots per GPU; the output layer counts as one, on its GPU
    gpu_layers: int                   # llama.cpp's n_gpu_layers: slots on GPUs, the output layer included
    layer_count: int                  # n_layer + 1: every slot llama.cpp could offload
    bytes_per_gpu: tuple[int, ...]    # weights + KV cache planned on each GPU
    capacity_per_gpu: tuple[int, ...]  # free memory minus the reserve (0: not used)
    reserve_bytes: int
    fits: bool                        # every layer on a GPU, each GPU within its capacity
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["cpu_layers"] = self.layer_count - self.gpu_layers
        return out


def kv_bytes_per_layer(info: Any, context: int, slots: int, bytes_per_element: int = KV_BYTES_PER_ELEMENT) -> int:
    """KV cache bytes one block needs for `slots` sequences of `context` tokens (K and V, f16)."""
    meta, arch = info.metadata, info.architecture
    heads = _number(meta.get(f"{arch}.attention.head_count")) or info.head_count
    # Per-layer arrays (summarised by the GGUF reader) fall back to the full head count: an upper bound.
    kv_heads = _number(meta.get(f"{arch}.attention.head_count_kv")) or info.head_count_kv or heads
    embedding = _number(meta.get(f"{arch}.embedding_length")) or info.embedding_length
    key = _number(meta.get(f"{arch}.attention.key_length")) or (embedding // heads if embedding and heads else 0)
    value = _number(meta.get(f"{arch}.attention.value_length")) or key
    if not kv_heads or not key:
        return 0
    return (key + value) * kv_heads * bytes_per_element * context * slots


def output_layer_bytes(info: Any) -> int:
    """Bytes of the non-block tensors llama.cpp puts on the output layer's device (not the input embeddings)."""
    tensors = info.non_layer_bytes
    size = sum(b for name, b in tensors.items() if not name.startswith(_INPUT_TENSORS))
    if "output.weight" not in tensors:
        size += tensors.get("token_embd.weight", 0)  # tied embeddings: duplicated onto the output device
    return size


def plan_split(layer_bytes: Sequence[int], non_layer_bytes: int, kv_bytes_per_layer: int,
               gpus: Sequence[GpuFree], preset: str = "balanced", reserve_bytes: int = DEFAULT_RESERVE_BYTES,
               max_gpu_layers: Optional[int] = None) -> Plan:
    """The most layers that fit, spread by `preset`; `non_layer_bytes` is the output layer (on the last GPU used)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    costs = [int(b) + kv_bytes_per_layer for b in layer_bytes] + [int(non_layer_bytes)]
    slots = len(costs)
    caps, notes = _capacities(costs[:-1], gpus, reserve_bytes)
    if not gpus or not layer_bytes:
        note = NO_GPU_NOTE if not gpus else "the model has no per-layer tensors to place"
        return Plan(preset, (), (0,) * len(gpus), 0, slots, (0,) * len(gpus), tuple(caps), reserve_bytes, False,
                    [note])
    limit = slots if max_gpu_layers is None or max_gpu_layers < 0 else min(slots, max_gpu_layers)
    start = _first_fitting_slot(costs, caps)
    gpu_layers = min(slots - start, limit)
    items = costs[slots - gpu_layers:]
    counts = _partition(items, caps, _targets(preset, sum(items), caps))
    placed = _bytes_per_gpu(items, counts)
    if gpu_layers < slots:
        reason = "as asked (gpu_layers)" if gpu_layers == limit and limit < slots - start else "no room left"
        notes.append(f"{slots - gpu_layers} of {slots} layers stay on the CPU ({reason}); "
                     f"{gpu_layers} are offloaded")
    if gpu_layers == 0:
        notes.append("nothing fits on the GPUs: the model runs on the CPU")
    return Plan(preset, split_for_counts(counts), counts, gpu_layers, slots, placed, tuple(caps), reserve_bytes,
                gpu_layers == slots, notes)


def evaluate_split(layer_bytes: Sequence[int], non_layer_bytes: int, kv_bytes_per_layer: int,
                   gpus: Sequence[GpuFree], tensor_split: Sequence[float], gpu_layers: int,
                   reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> Plan:
    """What a given `tensor_split` and `gpu_layers` (-1: all) would put on each GPU, as llama.cpp assigns it."""
    costs = [int(b) + kv_bytes_per_layer for b in layer_bytes] + [int(non_layer_bytes)]
    slots = len(costs)
    caps, notes = _capacities(costs[:-1], gpus, reserve_bytes, exclude_small=False)
    shares = (list(tensor_split) + [0.0] * len(gpus))[:len(gpus)]  # llama.cpp reads one share per device
    offloaded = slots if gpu_layers < 0 else min(gpu_layers, slots)
    if not gpus:
        offloaded, notes = 0, [NO_GPU_NOTE]
    items = costs[slots - offloaded:]
    counts = llama_cpp_layer_counts(shares, offloaded) if offloaded else (0,) * len(gpus)
    placed = _bytes_per_gpu(items, counts)
    over = [d for d, (used, cap) in enumerate(zip(placed, caps)) if used > cap]
    for d in over:
        notes.append(f"GPU {gpus[d].index} would need {_gib(placed[d])} but has {_gib(caps[d])} after the reserve: "
                     "the load may fail with out-of-memory")
    if offloaded < slots:
        notes.append(f"{slots - offloaded} of {slots} layers stay on the CPU")
    split = tuple(float(p) for p in shares) if offloaded else ()
    return Plan("custom", split, counts, offloaded, slots, placed, tuple(caps), reserve_bytes,
                offloaded == slots and not over, notes)


def llama_cpp_layer_counts(tensor_split: Sequence[float], gpu_layers: int) -> tuple[int, ...]:
    """Slots per device that llama.cpp's loader gives `gpu_layers` slots under `tensor_split` (float32, as it does)."""
    total, cumulative = 0.0, []
    for share in tensor_split:
        total = _f32(total + _f32(share))
        cumulative.append(total)
    counts = [0] * len(cumulative)
    if not counts or total <= 0:
        return tuple(counts)
    splits = [_f32(point / total) for point in cumulative]
    for slot in range(gpu_layers):
        device = bisect.bisect_right(splits, _f32(slot / gpu_layers))  # std::upper_bound
        counts[min(device, len(counts) - 1)] += 1
    return tuple(counts)


def split_for_counts(counts: Sequence[int]) -> tuple[float, ...]:
    """Proportions (6 decimals, sum 1) that make llama.cpp place exactly `counts` slots per device."""
    offloaded = sum(counts)
    if offloaded == 0:
        return ()
    # Exact fractions fail about one time in four: llama.cpp sums the shares in float32, the sum lands a step
    # under 1, and a boundary that rounds up moves a slot to the earlier GPU. So every boundary sits a
    # millionth or so below its exact place, far less than one slot (1/offloaded) but far more than float32 noise.
    split = _shares(counts, lambda c: math.floor(c / offloaded * 1e6 - 0.5) / 1e6)
    if llama_cpp_layer_counts(split, offloaded) == tuple(counts):
        return split
    return _shares(counts, lambda c: (c - 0.5) / offloaded)  # half-slot boundaries: the safe fallback


def _shares(counts: Sequence[int], boundary: Any) -> tuple[float, ...]:
    """Shares whose cumulative sums are boundary(c) at each interior cumulative count c."""
    total, running, points = sum(counts), 0, []
    for count in counts:
        running += count
        points.append(0.0 if running == 0 else 1.0 if running == total else boundary(running))
    return tuple(round(b - a, 6) for a, b in zip([0.0] + points[:-1], points))


def _capacities(block_costs: Sequence[int], gpus: Sequence[GpuFree], reserve: int,
                exclude_small: bool = True) -> tuple[list[int], list[str]]:
    """Usable bytes per GPU (free minus reserve); 0 (when excluding) for a GPU that cannot hold one block."""
    smallest = min(block_costs, default=0)
    caps, notes = [], []
    for gpu in gpus:
        cap = max(0, int(gpu.free_bytes) - reserve)
        if exclude_small and block_costs and cap < smallest:
            notes.append(f"GPU {gpu.index} is too small: {_gib(gpu.free_bytes)} free, {_gib(reserve)} reserve, "
                         f"one layer with its KV cache needs {_gib(smallest)}; its share is 0")
            cap = 0
        caps.append(cap)
    return caps, notes


def _first_fitting_slot(costs: Sequence[int], caps: Sequence[int]) -> int:
    """The first slot of the longest suffix that fits, filling the last GPU first (optimal for contiguous runs)."""
    return _reach(costs, caps)[0]


def _reach(items: Sequence[int], caps: Sequence[int]) -> list[int]:
    """reach[d]: the first item that GPUs d.. can hold, each taking as many trailing items as fit."""
    reach = [len(items)] * (len(caps) + 1)
    j = len(items)
    for d in range(len(caps) - 1, -1, -1):
        used = 0
        while j > 0 and used + items[j - 1] <= caps[d]:
            j -= 1
            used += items[j]
        reach[d] = j
    return reach


def _targets(preset: str, demand: int, caps: Sequence[int]) -> list[float]:
    """Bytes each GPU should take: in proportion to capacity, equal (capped), or GPU 0 first."""
    usable = [d for d, cap in enumerate(caps) if cap > 0]
    targets = [0.0] * len(caps)
    if preset == "balanced":
        total = sum(caps) or 1
        return [demand * cap / total for cap in caps]
    remaining = float(demand)
    order = sorted(usable, key=lambda d: caps[d]) if preset == "equal" else usable
    for position, d in enumerate(order):
        share = remaining / (len(order) - position) if preset == "equal" else remaining
        targets[d] = min(float(caps[d]), share)
        remaining -= targets[d]
    return targets


def _partition(items: Sequence[int], caps: Sequence[int], targets: Sequence[float]) -> tuple[int, ...]:
    """Contiguous runs of items per GPU, each within its capacity, boundaries nearest the cumulative targets."""
    prefix = [0]
    for cost in items:
        prefix.append(prefix[-1] + cost)
    reach = _reach(items, caps)
    counts, begin, goal = [], 0, 0.0
    for d, cap in enumerate(caps):
        goal += targets[d]
        if d == len(caps) - 1:
            end = len(items)
        else:
            low = max(reach[d + 1], begin)
            high = bisect.bisect_right(prefix, prefix[begin] + cap) - 1
            end = min(range(low, max(low, high) + 1), key=lambda j: (abs(prefix[j] - goal), j))
        counts.append(end - begin)
        begin = end
    return tuple(counts)


def _bytes_per_gpu(items: Sequence[int], counts: Sequence[int]) -> tuple[int, ...]:
    placed, begin = [], 0
    for count in counts:
        placed.append(sum(items[begin:begin + count]))
        begin += count
    return tuple(placed)


def _f32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _number(value: Any) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


def _gib(size: float) -> str:
    return f"{size / GIB:.2f} GiB"
