"""GpuReader over the fake pynvml: values, unsupported fields, lost GPUs, no driver."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ollama_server.monitoring.gpu import GpuReader
from tests.fakes.nvml import GIB
from tests.fakes.nvml import SCENARIOS
from tests.fakes.nvml import FakeNvml

ROOT = Path(__file__).resolve().parents[2]


def read(scenario: str):
    return GpuReader(nvml=FakeNvml(scenario)).read()


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"no_driver"}))
def test_it_reports_one_sample_per_gpu_in_index_order(scenario):
    samples = read(scenario)
    assert [s.index for s in samples] == list(range(len(SCENARIOS[scenario])))


def test_it_reads_every_field_in_base_units():
    first = read("two_unequal")[0]
    assert first.name == "NVIDIA GeForce RTX 4090"
    assert first.uuid.startswith("GPU-")
    assert first.memory_total_bytes == 24 * GIB
    assert first.memory_used_bytes == 1 * GIB
    assert first.memory_free_bytes == 23 * GIB
    assert first.utilization_percent == 35.0
    assert first.temperature_celsius == 61.0
    assert first.power_watts == 210.5  # NVML says 210500 mW
    assert first.lost is False


def test_it_keeps_each_gpus_own_memory_in_the_four_gpu_scenario():
    free = [s.memory_free_bytes / GIB for s in read("four_unequal")]
    assert free == [22.0, 15.0, 8.0, 7.5]


def test_it_turns_not_supported_fields_into_none_and_keeps_the_rest():
    full, partial = read("not_supported_fields")
    assert full.power_watts == 300.0 and full.temperature_celsius == 65.0
    assert partial.power_watts is None
    assert partial.temperature_celsius is None
    assert partial.memory_total_bytes == 16 * GIB
    assert partial.utilization_percent == 20.0
    assert partial.lost is False


def test_it_marks_a_gpu_lost_on_its_handle_and_still_reads_the_others():
    samples = read("lost_gpu")
    assert [s.lost for s in samples] == [False, True, False]
    assert samples[1].memory_free_bytes is None and "lost" in samples[1].error.lower()
    assert samples[2].memory_total_bytes == 12 * GIB


def test_it_marks_a_gpu_lost_during_a_read():
    good, lost = read("lost_gpu_on_read")
    assert good.lost is False and good.memory_total_bytes == 24 * GIB
    assert lost.lost is True and lost.name is None


def test_it_reports_no_gpus_and_the_reason_without_a_driver():
    reader = GpuReader(nvml=FakeNvml("no_driver"))
    assert reader.read() == []
    assert reader.devices == []
    assert reader.available is False
    assert "Driver Not Loaded" in reader.reason


def test_it_initialises_nvml_once_across_reads_and_shuts_it_down_on_close():
    nvml = FakeNvml("two_unequal")
    reader = GpuReader(nvml=nvml)
    reader.read()
    reader.read()
    reader.probe()
    assert nvml.init_calls == 1
    reader.close()
    assert nvml.shutdown_calls == 1


def test_it_does_not_retry_a_missing_driver_on_every_read():
    nvml = FakeNvml("no_driver")
    reader = GpuReader(nvml=nvml)
    reader.read()
    reader.read()
    assert nvml.init_calls == 1
    reader.close()
    assert nvml.shutdown_calls == 0


def test_it_sees_memory_change_between_reads():
    nvml = FakeNvml("two_unequal")
    reader = GpuReader(nvml=nvml)
    before = reader.read()[1].memory_free_bytes
    nvml.set_used(1, 10 * GIB)
    assert reader.read()[1].memory_free_bytes == before - 9.5 * GIB


def test_importing_the_reader_and_building_the_app_touch_no_nvml():
    code = ("import sys; import ollama_server.monitoring.gpu, ollama_server.api.weight_distribution; "
            "print('pynvml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_real_library_without_a_driver_gives_no_gpus_and_a_reason():
    reader = GpuReader()  # the real pynvml
    samples = reader.read()
    if reader.available:
        pytest.skip("this machine has an NVIDIA GPU")
    assert samples == [] and reader.reason


def test_it_reports_a_missing_nvidia_ml_py_as_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    reader = GpuReader()
    assert reader.read() == []
    assert "not installed" in reader.reason
