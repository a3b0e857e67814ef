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


def test_it_reads_every_extended_field_of_each_gpu_in_the_detailed_scenario():
    hot, idle, passive, old = read("four_detailed")
    assert hot.memory_utilization_percent == 61.0
    assert hot.power_limit_watts == 350.0
    assert (hot.power_min_limit_watts, hot.power_max_limit_watts) == (100.0, 365.0)
    assert hot.fan_speed_percent == 78.0
    assert (hot.clock_graphics_mhz, hot.clock_sm_mhz, hot.clock_memory_mhz) == (1695, 1695, 9751)
    assert (hot.pcie_generation, hot.pcie_width) == (4, 16)
    assert (idle.pcie_generation, idle.pcie_width) == (1, 8)  # an idle card downshifts its link
    assert (old.clock_graphics_mhz, old.fan_speed_percent, old.power_limit_watts) == (139, 23.0, 250.0)
    assert passive.power_watts == 58.5 and passive.power_limit_watts == 60.0


def test_it_decodes_throttle_bits_into_names():
    hot, idle, passive, old = read("four_detailed")
    assert hot.throttle_bits == 0x24
    assert hot.throttle_reasons == ("sw_power_cap", "sw_thermal_slowdown")
    assert idle.throttle_reasons == ("gpu_idle",)
    assert passive.throttle_reasons == ("hw_thermal_slowdown", "hw_power_brake_slowdown")
    assert old.throttle_reasons == () and old.throttle_bits == 0
    assert passive.to_dict()["throttle_reasons"] == ["hw_thermal_slowdown", "hw_power_brake_slowdown"]


def test_a_passively_cooled_card_drops_only_its_fan_speed():
    passive = read("four_detailed")[2]
    assert passive.fan_speed_percent is None
    assert passive.lost is False
    assert passive.temperature_celsius == 72.0 and passive.clock_sm_mhz == 1440


def test_the_real_reason_constants_give_the_same_names():
    pynvml = pytest.importorskip("pynvml")

    from ollama_server.monitoring.gpu import decode_reasons
    from ollama_server.monitoring.gpu import reason_table
    table = reason_table(pynvml)
    assert decode_reasons(0x24 | 0x40 | 0x80, table) == (
        "sw_power_cap", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
    assert decode_reasons(0x2, table) == ("applications_clocks_setting",)  # not the UserDefinedClocks alias
    assert decode_reasons(0, table) == ()


def test_unknown_throttle_bits_are_named_not_dropped():
    from ollama_server.monitoring.gpu import decode_reasons
    assert decode_reasons(0x1 | 0x8000) == ("gpu_idle", "unknown_0x8000")


def test_it_reports_the_driver_and_cuda_versions():
    reader = GpuReader(nvml=FakeNvml("four_detailed", driver_version="535.129.03", cuda_version=12020))
    reader.probe()
    assert reader.driver_version == "535.129.03"
    assert reader.cuda_version == "12.2"


@pytest.mark.parametrize("raw, text", [(12040, "12.4"), (11080, "11.8"), (12000, "12.0"), (None, None)])
def test_cuda_versions_are_formatted_like_nvidia_smi(raw, text):
    from ollama_server.monitoring.gpu import format_cuda_version
    assert format_cuda_version(raw) == text


def test_an_old_driver_without_the_cuda_call_still_reads_the_gpus():
    from tests.fakes.nvml import NVMLError
    reader = GpuReader(nvml=FakeNvml("two_unequal", cuda_version=NVMLError))
    assert len(reader.read()) == 2
    assert reader.cuda_version is None and reader.driver_version == "550.54.15"


def test_a_gpu_lost_mid_run_is_reported_then_marked_lost_while_the_other_still_reads():
    reader = GpuReader(nvml=FakeNvml("lost_mid_run"))
    first = reader.read()
    assert [s.lost for s in first] == [False, False]
    assert first[1].memory_total_bytes == 24 * GIB
    second = reader.read()
    assert [s.lost for s in second] == [False, True]
    assert second[0].memory_total_bytes == 24 * GIB
    assert "lost" in second[1].error.lower() and second[1].memory_total_bytes is None
    # it keeps the name and uuid of its last good read, so an alert can say which card went
    assert (second[1].name, second[1].uuid) == (first[1].name, first[1].uuid)
    assert [s.lost for s in reader.read()] == [False, True]  # stays lost, still listed


def test_no_library_at_all_gives_no_gpus_and_says_why():
    reader = GpuReader(nvml=FakeNvml("no_library"))
    assert reader.read() == [] and reader.devices == []
    assert reader.available is False
    assert "Library Not Found" in reader.reason
    assert reader.driver_version is None and reader.cuda_version is None
