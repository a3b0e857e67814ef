"""Print the weight-distribution plans used in docs/gpu-planning.md, computed by the service's own planner.

    .venv/bin/python scripts/plan_example.py

The models are described by their shapes and an assumed Q4_K_M tensor-type mix (stated below); the
service itself reads the real per-layer sizes from a GGUF's tensor table.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_server.engine import planner  # noqa: E402
from ollama_server.engine.planner import GIB  # noqa: E402
from ollama_server.engine.planner import MIB  # noqa: E402
from ollama_server.engine.planner import GpuFree  # noqa: E402
from ollama_server.models.ggml_types import tensor_bytes  # noqa: E402
from ollama_server.models.inspect import ModelInfo  # noqa: E402

F32, Q4_K, Q6_K = 0, 12, 14
CONTEXT, SLOTS = 4096, 4  # the defaults: default_context_size and parallel_slots


def more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's use_more_bits(): the first and last eighth of the blocks, and every third one between."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def q4_k_m_model(arch: str, blocks: int, embd: int, heads: int, kv_heads: int, ffn: int, vocab: int) -> ModelInfo:
    """A ModelInfo with the tensor sizes of a Q4_K_M model of these shapes (attn_v/ffn_down Q6_K where more_bits)."""
    head = embd // heads
    layer_bytes = []
    for i in range(blocks):
        wide = Q6_K if more_bits(i, blocks) else Q4_K
        shapes = [((embd, embd), Q4_K), ((embd, kv_heads * head), Q4_K), ((embd, kv_heads * head), wide),
                  ((embd, embd), Q4_K), ((embd, ffn), Q4_K), ((embd, ffn), Q4_K), ((ffn, embd), wide),
                  ((embd,), F32), ((embd,), F32)]
        layer_bytes.append(sum(tensor_bytes(shape, kind) for shape, kind in shapes))
    non_layer = {"token_embd.weight": tensor_bytes((embd, vocab), Q4_K),
                 "output.weight": tensor_bytes((embd, vocab), Q6_K), "output_norm.weight": tensor_bytes((embd,), F32)}
    metadata = {f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": kv_heads,
                f"{arch}.attention.key_length": head, f"{arch}.embedding_length": embd}
    return ModelInfo(path=f"{arch}-{blocks}.gguf", architecture=arch, layer_bytes=tuple(layer_bytes),
                     non_layer_bytes=non_layer, metadata=metadata)


def gib(size: float) -> str:
    return f"{size / GIB:.2f}"


def show(title: str, info: ModelInfo, gpus: list[GpuFree]) -> None:
    kv = planner.kv_bytes_per_layer(info, CONTEXT, SLOTS)
    output = planner.output_layer_bytes(info)
    blocks = info.layer_bytes
    print(f"## {title}\n")
    print(f"- blocks: {len(blocks)}, block weights {gib(min(blocks))}–{gib(max(blocks))} GiB "
          f"(total {gib(sum(blocks))} GiB); token_embd {gib(info.non_layer_bytes['token_embd.weight'])} GiB "
          f"(stays on the CPU); output layer {gib(output)} GiB")
    print(f"- KV cache per block: {kv / MIB:.0f} MiB (context {CONTEXT} x {SLOTS} slots); "
          f"GPU demand if fully offloaded: {gib(sum(blocks) + kv * len(blocks) + output)} GiB")
    print(f"- free per GPU: {', '.join(gib(g.free_bytes) for g in gpus)} GiB; reserve "
          f"{planner.DEFAULT_RESERVE_BYTES / MIB:.0f} MiB per GPU\n")
    print("| preset | tensor_split | layers per GPU | GiB per GPU | capacity GiB | gpu_layers | fits |")
    print("|---|---|---|---|---|---|---|")
    for preset in planner.PRESETS:
        plan = planner.plan_split(blocks, output, kv, gpus, preset)
        print(f"| {preset} | {', '.join(f'{s:g}' for s in plan.tensor_split)} | "
              f"{', '.join(map(str, plan.layers_per_gpu))} | {', '.join(gib(b) for b in plan.bytes_per_gpu)} | "
              f"{', '.join(gib(c) for c in plan.capacity_per_gpu)} | {plan.gpu_layers}/{plan.layer_count} | "
              f"{'yes' if plan.fits else 'no'} |")
        for note in plan.notes:
            print(f"|  | note: {note} | | | | | |")
    print()


def main() -> None:
    llama13 = q4_k_m_model("llama", blocks=40, embd=5120, heads=40, kv_heads=40, ffn=13824, vocab=32000)
    llama70 = q4_k_m_model("llama", blocks=80, embd=8192, heads=64, kv_heads=8, ffn=28672, vocab=128256)
    seed = [GpuFree(i, int(7.75 * GIB)) for i in range(4)]               # 4 x 8 GiB, 0.25 GiB used each
    mixed = [GpuFree(0, int(23.5 * GIB)), GpuFree(1, int(23.5 * GIB)), GpuFree(2, int(11.5 * GIB))]
    show("(a) 13B Q4_K_M (Llama 2 13B shapes) on 4 x 8 GB", llama13, seed)
    show("(b) 70B Q4_K_M (Llama 3 70B shapes) on 2 x 24 GB + 1 x 12 GB", llama70, mixed)
    show("(c) the same 70B on one 24 GB GPU: partial offload", llama70, mixed[:1])


if __name__ == "__main__":
    main()
