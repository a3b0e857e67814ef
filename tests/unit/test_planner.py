"""The weight-distribution planner on the fake NVML's GPUs: presets, fit, llama.cpp's own layer assignment."""
from __future__ import annotations

import itertools
import random
import runpy
from pathlib import Path

import pytest

from ollama_server.engine import planner
from ollama_server.engine.planner import MIB
from ollama_server.engine.planner import GpuFree
from ollama_server.models.inspect import ModelInfo
from ollama_server.monitoring.gpu import GpuReader
from tests.fakes.nvml import FakeNvml

ROOT = Path(__file__).resolve().parents[2]
RESERVE = 1024 * MIB
# A 13B-sized model: 40 blocks of 400 MiB, 100 MiB of KV cache per block, a 300 MiB output layer (19.8 GiB).
BLOCKS = [400 * MIB] * 40
KV = 100 * MIB
OUTPUT = 300 * MIB


def gpus(scenario: str) -> list[GpuFree]:
    """Free memory per GPU as the reader reports it for a fake NVML scenario."""
    return [GpuFree(s.index, s.memory_free_bytes) for s in GpuReader(nvml=FakeNvml(scenario)).read()]


def plan(scenario: str, preset: str, blocks=BLOCKS, kv=KV, output=OUTPUT, **kwargs) -> planner.Plan:
    return planner.plan_split(blocks, output, kv, gpus(scenario), preset, RESERVE, **kwargs)


def item_costs(blocks=BLOCKS, kv=KV, output=OUTPUT) -> list[int]:
    return [b + kv for b in blocks] + [output]


@pytest.mark.parametrize("scenario,preset", list(itertools.product(["two_unequal", "four_unequal"], planner.PRESETS)))
def test_every_preset_fits_the_model_within_each_gpus_free_memory_minus_reserve(scenario, preset):
    result = plan(scenario, preset)
    free = gpus(scenario)
    assert result.fits is True
    assert result.gpu_layers == result.layer_count == 41
    assert sum(result.layers_per_gpu) == result.gpu_layers
    assert sum(result.bytes_per_gpu) == sum(item_costs())
    for used, gpu in zip(result.bytes_per_gpu, free):
        assert used <= gpu.free_bytes - RESERVE
    assert len(result.tensor_split) == len(free)
    assert sum(result.tensor_split) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("scenario,preset", list(itertools.product(
    ["two_unequal", "four_unequal", "one_too_small"], planner.PRESETS)))
def test_llama_cpp_would_place_exactly_the_planned_layers(scenario, preset):
    result = plan(scenario, preset)
    assert planner.llama_cpp_layer_counts(result.tensor_split, result.gpu_layers) == result.layers_per_gpu


def test_balanced_follows_free_memory_on_two_unequal_gpus():
    result = plan("two_unequal", "balanced")
    caps = result.capacity_per_gpu  # 22 GiB and 10.5 GiB
    share = result.bytes_per_gpu[0] / sum(result.bytes_per_gpu)
    assert share == pytest.approx(caps[0] / sum(caps), abs=(500 * MIB) / sum(result.bytes_per_gpu))
    assert result.layers_per_gpu == (27, 14)  # 13.2 + 6.8 GiB against a 13.4 : 6.4 GiB target


def test_balanced_follows_free_memory_on_four_unequal_gpus():
    result = plan("four_unequal", "balanced")
    total, caps = sum(result.bytes_per_gpu), result.capacity_per_gpu
    for used, cap in zip(result.bytes_per_gpu, caps):
        assert used / total == pytest.approx(cap / sum(caps), abs=(500 * MIB) / total)
    assert result.layers_per_gpu[0] > result.layers_per_gpu[1] > result.layers_per_gpu[2] >= result.layers_per_gpu[3]


@pytest.mark.parametrize("scenario", ["two_unequal", "four_unequal"])
def test_equal_gives_each_gpu_the_same_bytes_within_one_layer(scenario):
    result = plan(scenario, "equal")
    assert max(result.bytes_per_gpu) - min(result.bytes_per_gpu) <= max(item_costs())
    assert max(result.layers_per_gpu) - min(result.layers_per_gpu) <= 1


def test_equal_and_balanced_differ_on_unequal_gpus():
    balanced, equal = plan("two_unequal", "balanced"), plan("two_unequal", "equal")
    assert balanced.layers_per_gpu[0] > 1.5 * balanced.layers_per_gpu[1]
    assert abs(equal.layers_per_gpu[0] - equal.layers_per_gpu[1]) <= 1
    assert balanced.tensor_split != equal.tensor_split


def test_equal_caps_a_small_gpu_and_gives_the_rest_to_the_others():
    # 60 blocks of 500 MiB: 29.6 GiB; half would be 14.8 GiB but the 12 GB card has 10.5 GiB to give.
    result = plan("two_unequal", "equal", blocks=[400 * MIB] * 60)
    caps = result.capacity_per_gpu
    assert result.fits
    assert caps[1] - 500 * MIB < result.bytes_per_gpu[1] <= caps[1]
    assert result.bytes_per_gpu[0] > result.bytes_per_gpu[1]


def test_priority_puts_a_small_model_on_the_first_gpu_only():
    result = plan("four_unequal", "priority")
    assert result.layers_per_gpu == (41, 0, 0, 0)
    assert result.tensor_split == (1.0, 0.0, 0.0, 0.0)


def test_priority_fills_the_first_gpu_before_the_next():
    result = plan("four_unequal", "priority", blocks=[400 * MIB] * 60)  # 29.6 GiB: more than GPU 0's 21 GiB
    caps = result.capacity_per_gpu
    assert caps[0] - 500 * MIB < result.bytes_per_gpu[0] <= caps[0]
    assert result.layers_per_gpu[1] > 0
    assert result.layers_per_gpu[2:] == (0, 0)


@pytest.mark.parametrize("preset", planner.PRESETS)
def test_a_gpu_too_small_for_one_layer_gets_share_zero_and_a_note(preset):
    # Layers of 800 MiB with their KV cache; the 2 GB card has 1.75 GiB free, 0.75 GiB after the reserve.
    result = plan("one_too_small", preset, blocks=[600 * MIB] * 25, kv=200 * MIB)
    assert result.layers_per_gpu[1] == 0
    assert result.tensor_split[1] == 0.0
    assert result.bytes_per_gpu[1] == 0
    assert any("GPU 1 is too small" in note for note in result.notes)
    assert result.fits


@pytest.mark.parametrize("preset", planner.PRESETS)
def test_a_model_bigger_than_all_gpus_keeps_its_first_layers_on_the_cpu(preset):
    blocks = [900 * MIB] * 80  # 80 blocks of 1 GiB with KV: far more than 32.5 GiB of room
    result = plan("two_unequal", preset, blocks=blocks)
    costs = item_costs(blocks=blocks)
    assert result.fits is False
    assert 0 < result.gpu_layers < result.layer_count
    assert sum(result.layers_per_gpu) == result.gpu_layers
    # llama.cpp offloads the last slots, output first: the planned bytes are exactly that suffix.
    assert sum(result.bytes_per_gpu) == sum(costs[-result.gpu_layers:])
    assert all(used <= cap for used, cap in zip(result.bytes_per_gpu, result.capacity_per_gpu))
    # ... and it is the most that fits: no cut of one more slot over the two GPUs stays within both.
    more = costs[-result.gpu_layers - 1:]
    caps = result.capacity_per_gpu
    assert not any(sum(more[:cut]) <= caps[0] and sum(more[cut:]) <= caps[1] for cut in range(len(more) + 1))
    assert any("stay on the CPU" in note for note in result.notes)


def test_the_most_layers_that_fit_is_the_same_for_every_preset():
    blocks = [900 * MIB] * 80
    assert len({plan("four_unequal", preset, blocks=blocks).gpu_layers for preset in planner.PRESETS}) == 1


def test_gpu_layers_can_be_capped():
    result = plan("two_unequal", "balanced", max_gpu_layers=10)
    assert result.gpu_layers == 10 and sum(result.layers_per_gpu) == 10
    assert result.fits is False
    assert any("as asked" in note for note in result.notes)


def test_no_gpu_means_the_cpu_with_a_note():
    result = planner.plan_split(BLOCKS, OUTPUT, KV, [], "balanced")
    assert result.gpu_layers == 0
    assert result.tensor_split == ()
    assert result.fits is False
    assert result.notes == [planner.NO_GPU_NOTE]


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        planner.plan_split(BLOCKS, OUTPUT, KV, gpus("two_unequal"), "fastest")


def test_split_proportions_always_reproduce_the_counts_in_llama_cpp():
    rng = random.Random(5)
    for _ in range(1000):
        counts = [rng.choice([0, rng.randint(0, 130)]) for _ in range(rng.randint(1, 16))]
        if sum(counts) == 0:
            continue
        split = planner.split_for_counts(counts)
        assert min(split) >= 0 and sum(split) == pytest.approx(1.0, abs=1e-5)
        assert planner.llama_cpp_layer_counts(split, sum(counts)) == tuple(counts)


def test_exact_fractions_can_misplace_a_layer_where_the_planned_split_does_not():
    # Why split_for_counts does not return c / n: llama.cpp sums in float32 and a boundary can land a step high.
    misplaced = [c for c in itertools.product(range(1, 20), repeat=3)
                 if planner.llama_cpp_layer_counts([x / sum(c) for x in c], sum(c)) != c]
    assert misplaced
    for counts in misplaced:
        assert planner.llama_cpp_layer_counts(planner.split_for_counts(counts), sum(counts)) == counts


def test_an_explicit_split_is_evaluated_as_llama_cpp_would_place_it():
    result = planner.evaluate_split(BLOCKS, OUTPUT, KV, gpus("two_unequal"), [1, 1], -1, RESERVE)
    assert result.preset == "custom"
    assert result.layers_per_gpu == (21, 20)  # 41 slots, 1:1, the extra slot on the first device
    assert result.fits is True


def test_an_explicit_split_that_overflows_a_gpu_is_flagged():
    result = planner.evaluate_split([400 * MIB] * 60, OUTPUT, KV, gpus("two_unequal"), [1, 3], -1, RESERVE)
    assert result.fits is False
    assert any("GPU 1 would need" in note for note in result.notes)


def info(arch="llama", **meta) -> ModelInfo:
    metadata = {f"{arch}.{key.replace('__', '.')}": value for key, value in meta.items()}
    return ModelInfo(path="x.gguf", architecture=arch, metadata=metadata)


def test_kv_cache_per_layer_uses_grouped_query_heads():
    # A 70B: 8 KV heads of 128, context 4096, 4 slots: 2 * 8 * 128 * 2 bytes * 16384 tokens = 64 MiB.
    llama70 = info(attention__head_count=64, attention__head_count_kv=8, attention__key_length=128,
                   embedding_length=8192)
    assert planner.kv_bytes_per_layer(llama70, 4096, 4) == 64 * MIB


def test_kv_cache_per_layer_derives_the_head_size_from_the_embedding():
    llama13 = info(attention__head_count=40, attention__head_count_kv=40, embedding_length=5120)
    assert planner.kv_bytes_per_layer(llama13, 4096, 4) == 320 * MIB


def test_kv_cache_per_layer_is_zero_when_the_header_says_nothing():
    assert planner.kv_bytes_per_layer(info(), 4096, 4) == 0


def test_the_output_layer_excludes_the_input_embeddings_unless_they_are_tied():
    untied = ModelInfo(path="x", non_layer_bytes={"token_embd.weight": 100, "output.weight": 150,
                                                  "output_norm.weight": 4})
    tied = ModelInfo(path="x", non_layer_bytes={"token_embd.weight": 100, "output_norm.weight": 4})
    assert planner.output_layer_bytes(untied) == 154
    assert planner.output_layer_bytes(tied) == 104


def example() -> dict:
    return runpy.run_path(str(ROOT / "scripts" / "plan_example.py"), run_name="plan_example")


def test_the_gpu_planning_doc_shows_what_the_planner_prints(capsys):
    example()["main"]()
    doc = (ROOT / "docs" / "gpu-planning.md").read_text()
    missing = [line for line in capsys.readouterr().out.splitlines() if line not in doc]
    assert missing == []


def test_the_docs_paper_check_holds_on_the_fake_two_24_one_12_gpus():
    llama70 = example()["q4_k_m_model"]("llama", blocks=80, embd=8192, heads=64, kv_heads=8, ffn=28672,
                                        vocab=128256)
    kv = planner.kv_bytes_per_layer(llama70, 4096, 4)
    result = planner.plan_split(llama70.layer_bytes, planner.output_layer_bytes(llama70), kv,
                                gpus("two_24_one_12"), "balanced")
    assert kv == 67_108_864
    assert result.layers_per_gpu == (33, 34, 14)
    assert result.tensor_split == (0.407406, 0.419753, 0.172841)
    assert result.bytes_per_gpu[2] == 8_681_930_752
