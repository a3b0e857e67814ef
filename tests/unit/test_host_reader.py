"""HostReader over a scripted fake psutil (deterministic) and once over the real one (types and ranges)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import psutil

from ollama_server.monitoring.host import HostReader
from ollama_server.monitoring.host import HostSample

GIB = 1024 ** 3


class FakeProcess:
    def __init__(self, pid: int, denied: bool = False):
        self.pid, self.denied = pid, denied

    def memory_info(self):
        return SimpleNamespace(rss=300 * 1024 ** 2, vms=2 * GIB)

    def num_threads(self):
        return 12

    def num_fds(self):
        if self.denied:
            raise PermissionError("AccessDenied")
        return 42

    def create_time(self):
        return 1_000.0


class FakePsutil:
    """The psutil calls HostReader makes; cpu_percent returns 0.0 first, as psutil does."""

    def __init__(self, cpu=(0.0, 37.5, 50.0), denied: bool = False, no_swap: bool = False):
        self.cpu = list(cpu)
        self.cpu_calls: list[dict] = []
        self.disk_paths: list[str] = []
        self.denied, self.no_swap = denied, no_swap

    def Process(self, pid):
        return FakeProcess(pid, self.denied)

    def cpu_percent(self, interval=None, percpu=False):
        self.cpu_calls.append({"interval": interval, "percpu": percpu})
        total = self.cpu.pop(0) if self.cpu else 10.0
        return [total, total] if percpu else total

    def cpu_count(self):
        return 2

    def getloadavg(self):
        return (0.5, 0.25, 0.125)

    def virtual_memory(self):
        return SimpleNamespace(total=32 * GIB, used=8 * GIB, available=24 * GIB, percent=25.0)

    def swap_memory(self):
        if self.no_swap:
            raise OSError("no /proc/swaps")
        return SimpleNamespace(total=4 * GIB, used=1 * GIB, percent=25.0)

    def disk_usage(self, path):
        self.disk_paths.append(path)
        return SimpleNamespace(total=500 * GIB, used=100 * GIB, free=400 * GIB, percent=20.0)

    def boot_time(self):
        return 500.0


def make(tmp_path, **kwargs):
    fake = FakePsutil(**kwargs)
    return fake, HostReader(psutil_module=fake, data_dir=str(tmp_path), clock=lambda: 1_060.0)


def test_it_primes_cpu_percent_at_construction_so_the_first_read_is_not_a_fake_zero(tmp_path):
    fake, reader = make(tmp_path, cpu=(0.0, 0.0, 37.5, 37.5))
    assert len(fake.cpu_calls) == 2  # total and per core, both primed
    sample = reader.read()
    assert sample.cpu_percent == 37.5
    assert all(call["interval"] is None for call in fake.cpu_calls)  # never blocks


def test_a_read_from_another_thread_primes_that_thread_and_reports_unknown_not_zero(tmp_path):
    import threading
    fake, reader = make(tmp_path, cpu=(0.0, 0.0, 0.0, 0.0, 42.0, 42.0))
    first: list = []
    worker = threading.Thread(target=lambda: first.extend([reader.read(), reader.read()]))
    worker.start()
    worker.join()
    assert first[0].cpu_percent is None and first[0].cpu_per_core_percent is None
    assert first[0].memory_total_bytes == 32 * GIB  # the rest of the sample is there
    assert first[1].cpu_percent == 42.0


def test_without_psutil_it_returns_empty_samples(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    reader = HostReader(data_dir=str(tmp_path), clock=lambda: 5.0)
    assert reader.available is False and "psutil" in reader.reason
    assert reader.read() == HostSample(at=5.0)


def test_it_reads_every_field(tmp_path):
    fake, reader = make(tmp_path, cpu=(0.0, 0.0, 37.5, 37.5))
    sample = reader.read()
    assert isinstance(sample, HostSample) and sample.at == 1_060.0
    assert sample.cpu_per_core_percent == (37.5, 37.5) and sample.cpu_count == 2
    assert sample.load_average == (0.5, 0.25, 0.125)
    assert (sample.memory_used_bytes, sample.memory_total_bytes, sample.memory_percent) == (8 * GIB, 32 * GIB, 25.0)
    assert (sample.swap_used_bytes, sample.swap_total_bytes, sample.swap_percent) == (GIB, 4 * GIB, 25.0)
    assert (sample.disk_used_bytes, sample.disk_total_bytes, sample.disk_percent) == (100 * GIB, 500 * GIB, 20.0)
    assert sample.disk_path == str(tmp_path) and fake.disk_paths == [str(tmp_path)]
    assert (sample.process_rss_bytes, sample.process_threads, sample.process_open_fds) == (300 * 1024 ** 2, 12, 42)
    assert sample.process_uptime_seconds == 60.0
    assert sample.boot_uptime_seconds == 560.0


def test_a_data_dir_that_does_not_exist_yet_measures_its_nearest_parent(tmp_path):
    fake = FakePsutil()
    reader = HostReader(psutil_module=fake, data_dir=str(tmp_path / "not" / "yet"), clock=lambda: 1.0)
    assert reader.read().disk_total_bytes == 500 * GIB
    assert fake.disk_paths == [str(tmp_path)]


def test_failing_calls_drop_only_their_fields(tmp_path):
    _, reader = make(tmp_path, denied=True, no_swap=True)
    sample = reader.read()
    assert sample.process_open_fds is None and sample.swap_total_bytes is None and sample.swap_percent is None
    assert sample.process_threads == 12 and sample.memory_total_bytes == 32 * GIB


def test_per_core_can_be_turned_off(tmp_path):
    fake = FakePsutil(cpu=(0.0, 20.0))
    sample = HostReader(psutil_module=fake, data_dir=str(tmp_path), per_core=False).read()
    assert sample.cpu_percent == 20.0 and sample.cpu_per_core_percent is None


def test_to_dict_is_json_ready(tmp_path):
    import json
    _, reader = make(tmp_path)
    data = reader.read().to_dict()
    assert data["load_average"] == [0.5, 0.25, 0.125]
    json.dumps(data)


def test_the_real_psutil_gives_sane_types_and_ranges(tmp_path):
    sample = HostReader(data_dir=str(tmp_path)).read()
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert len(sample.cpu_per_core_percent) == psutil.cpu_count()
    assert all(0.0 <= core <= 100.0 for core in sample.cpu_per_core_percent)
    assert 0 < sample.memory_used_bytes <= sample.memory_total_bytes
    assert 0.0 <= sample.memory_percent <= 100.0
    assert 0 < sample.disk_used_bytes <= sample.disk_total_bytes and 0.0 <= sample.disk_percent <= 100.0
    assert sample.process_rss_bytes > 0 and sample.process_threads >= 1
    if os.name == "posix":
        assert sample.process_open_fds > 0 and len(sample.load_average) == 3
    assert sample.process_uptime_seconds >= 0.0 and sample.boot_uptime_seconds > 0.0
