"""A fake `pynvml` for machines without a GPU: the real function names, devices from a scenario table."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

GIB = 1024 ** 3
MIB = 1024 ** 2


class NVMLError(Exception):
    """Base class, as pynvml.NVMLError."""


class NVMLError_NotSupported(NVMLError):
    """The device does not support the query (passively cooled cards, some laptops, vGPUs)."""

    def __init__(self, message: str = "Not Supported"):
        super().__init__(message)


class NVMLError_GpuIsLost(NVMLError):
    """The GPU fell off the bus."""

    def __init__(self, message: str = "GPU is lost"):
        super().__init__(message)


class NVMLError_DriverNotLoaded(NVMLError):
    """nvmlInit on a machine without the NVIDIA driver."""

    def __init__(self, message: str = "Driver Not Loaded"):
        super().__init__(message)


class NVMLError_Uninitialized(NVMLError):
    """A query before nvmlInit."""

    def __init__(self, message: str = "Uninitialized"):
        super().__init__(message)


class NVMLError_LibraryNotFound(NVMLError):
    """nvmlInit when libnvidia-ml.so.1 is not installed at all."""

    def __init__(self, message: str = "NVML Shared Library Not Found"):
        super().__init__(message)


class NVMLError_NoPermission(NVMLError):
    """A root-only call (setting the power limit) made by an ordinary user."""

    def __init__(self, message: str = "Insufficient Permissions"):
        super().__init__(message)


class NVMLError_InvalidArgument(NVMLError):
    """A power limit outside the card's constraints, as the real driver refuses it."""

    def __init__(self, message: str = "Invalid Argument"):
        super().__init__(message)


# Bits as nvml.h / pynvml define them (a subset, enough for the reader to build its table).
THROTTLE = {"GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8,
            "SyncBoost": 0x10, "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40, "HwPowerBrakeSlowdown": 0x80}


def gpu(name: str, total_gib: float, used_gib: float, util: int = 0, temp: int = 40, power_w: float = 30.0,
        **overrides: Any) -> dict[str, Any]:
    """One device row; an override may be an exception class that the matching call raises."""
    total, used = int(total_gib * GIB), int(used_gib * GIB)
    row = {"name": name, "uuid": None,
           "total": total, "used": used, "util": util, "temp": temp, "power_mw": int(power_w * 1000),
           "handle": None, "mem_util": 0, "power_limit_mw": 250_000, "power_constraints": (100_000, 300_000),
           "fan": 30, "clock_gr": 1500, "clock_sm": 1500, "clock_mem": 7000, "throttle": 0,
           "pcie_gen": 4, "pcie_width": 16, "lose_after_reads": None, "set_power_error": None}
    row.update(overrides)
    return row


# Scenario -> devices, in NVML index order. Named after what they reproduce.
SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "two_unequal": [gpu("NVIDIA GeForce RTX 4090", 24, 1.0, util=35, temp=61, power_w=210.5),
                    gpu("NVIDIA GeForce RTX 3060", 12, 0.5, util=5, temp=44, power_w=31.0)],
    "four_unequal": [gpu("NVIDIA RTX A5000", 24, 2.0, util=50, temp=70, power_w=180.0),
                     gpu("NVIDIA RTX A4000", 16, 1.0, util=10, temp=55, power_w=70.0),
                     gpu("NVIDIA GeForce RTX 3060", 12, 4.0, util=80, temp=76, power_w=160.0),
                     gpu("NVIDIA GeForce RTX 3070", 8, 0.5, util=0, temp=38, power_w=15.0)],
    "one_too_small": [gpu("NVIDIA GeForce RTX 4090", 24, 1.0), gpu("NVIDIA GeForce GT 1030", 2, 0.25)],
    # The seed's example machine: four 8 GB cards, a little used by the driver on each.
    "seed_4x8gb": [gpu("NVIDIA GeForce RTX 3070", 8, 0.25) for _ in range(4)],
    "two_24_one_12": [gpu("NVIDIA GeForce RTX 3090", 24, 0.5), gpu("NVIDIA GeForce RTX 3090", 24, 0.5),
                      gpu("NVIDIA GeForce RTX 3060", 12, 0.5)],
    # gpustat's NotSupported case: the second card reports no power and no temperature.
    "not_supported_fields": [gpu("NVIDIA A100-SXM4-40GB", 40, 3.0, util=90, temp=65, power_w=300.0),
                             gpu("NVIDIA A16", 16, 1.0, util=20, temp=NVMLError_NotSupported,
                                 power_w=0, power_mw=NVMLError_NotSupported)],
    # A card that fell off the bus: its handle cannot be had; the cards around it still answer.
    "lost_gpu": [gpu("NVIDIA GeForce RTX 3090", 24, 1.0), gpu("NVIDIA GeForce RTX 3090", 24, 1.0,
                                                              handle=NVMLError_GpuIsLost),
                 gpu("NVIDIA GeForce RTX 3060", 12, 1.0)],
    # ... or it gets lost between the handle and the first read.
    "lost_gpu_on_read": [gpu("NVIDIA GeForce RTX 3090", 24, 1.0),
                         gpu("NVIDIA GeForce RTX 3090", 24, 1.0, total=NVMLError_GpuIsLost)],
    # Every field differs per card: fans, clocks, throttle bits, PCIe; the A2 is passively cooled (no fan).
    "four_detailed": [
        gpu("NVIDIA GeForce RTX 3090", 24, 6.0, util=97, temp=83, power_w=348.2, mem_util=61,
            power_limit_mw=350_000, power_constraints=(100_000, 365_000), fan=78, clock_gr=1695, clock_sm=1695,
            clock_mem=9751, throttle=0x4 | 0x20, pcie_gen=4, pcie_width=16),
        gpu("NVIDIA GeForce RTX 3060", 12, 1.5, util=12, temp=47, power_w=41.0, mem_util=4,
            power_limit_mw=170_000, power_constraints=(100_000, 170_000), fan=35, clock_gr=210, clock_sm=210,
            clock_mem=405, throttle=0x1, pcie_gen=1, pcie_width=8),
        gpu("NVIDIA A2", 16, 3.0, util=55, temp=72, power_w=58.5, mem_util=30, power_limit_mw=60_000,
            power_constraints=(35_000, 60_000), fan=NVMLError_NotSupported, clock_gr=1440, clock_sm=1440,
            clock_mem=6251, throttle=0x40 | 0x80, pcie_gen=4, pcie_width=8),
        gpu("NVIDIA GeForce GTX 1080 Ti", 11, 0.5, util=0, temp=36, power_w=12.0, mem_util=0,
            power_limit_mw=250_000, power_constraints=(125_000, 300_000), fan=23, clock_gr=139, clock_sm=139,
            clock_mem=405, throttle=0, pcie_gen=3, pcie_width=16)],
    # A card answers the first read, then falls off the bus (Xid 79) before the second.
    "lost_mid_run": [gpu("NVIDIA GeForce RTX 3090", 24, 1.0),
                     gpu("NVIDIA GeForce RTX 3090", 24, 1.0, lose_after_reads=1)],
    "no_driver": [],
    "no_library": [],
}
INIT_ERRORS = {"no_driver": NVMLError_DriverNotLoaded, "no_library": NVMLError_LibraryNotFound}


def _value(row: dict[str, Any], key: str) -> Any:
    value = row[key]
    if isinstance(value, type) and issubclass(value, BaseException):
        raise value()
    return value


class FakeNvml:
    """Stands in for the `pynvml` module: `GpuReader(nvml=FakeNvml("four_unequal"))`."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    CLOCK_KEYS = {0: "clock_gr", 1: "clock_sm", 2: "clock_mem"}

    def __init__(self, scenario: str = "two_unequal", driver_version: str = "550.54.15",
                 cuda_version: Any = 12040):
        self.scenario = scenario
        self.devices = [dict(row) for row in SCENARIOS[scenario]]
        for index, row in enumerate(self.devices):
            row["uuid"] = row["uuid"] or f"GPU-00000000-fake-{scenario.replace('_', '-')}-{index}"
        self.init_error = INIT_ERRORS.get(scenario)
        self.driver_version, self.cuda_version = driver_version, cuda_version
        self.handle_calls = [0] * len(self.devices)
        self.init_calls = 0
        self.shutdown_calls = 0
        self.initialised = False
        self.power_limit_sets: list[tuple[int, int]] = []  # (index, milliwatts) of every accepted set, in order

    def fail_power_limit(self, index: int, error: type = NVMLError_NoPermission) -> None:
        """Make setting GPU `index`'s power limit raise `error` (NoPermission: not root)."""
        self.devices[index]["set_power_error"] = error

    def set_used(self, index: int, used_bytes: int) -> None:
        """Change a device's used memory (a model loaded elsewhere)."""
        self.devices[index]["used"] = used_bytes

    def _row(self, handle: Any) -> dict[str, Any]:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        return self.devices[handle.index]

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise self.init_error()
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        row = self.devices[index]
        _value(row, "handle")
        self.handle_calls[index] += 1
        if row["lose_after_reads"] is not None and self.handle_calls[index] > row["lose_after_reads"]:
            row["handle"] = NVMLError_GpuIsLost  # stays lost, as a real card does until a reset
            raise NVMLError_GpuIsLost()
        return SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return _value(self._row(handle), "name")

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return _value(self._row(handle), "uuid")

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        row = self._row(handle)
        total, used = _value(row, "total"), _value(row, "used")
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        row = self._row(handle)
        return SimpleNamespace(gpu=_value(row, "util"), memory=_value(row, "mem_util"))

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return _value(self._row(handle), "temp")

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return _value(self._row(handle), "power_mw")

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return _value(self._row(handle), "power_limit_mw")

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> list[int]:
        return list(_value(self._row(handle), "power_constraints"))

    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, limit_mw: int) -> None:
        row = self._row(handle)
        _value(row, "set_power_error")
        low, high = _value(row, "power_constraints")
        if not low <= limit_mw <= high:
            raise NVMLError_InvalidArgument()
        row["power_limit_mw"] = int(limit_mw)
        self.power_limit_sets.append((handle.index, int(limit_mw)))

    def nvmlDeviceGetFanSpeed(self, handle: Any) -> int:
        return _value(self._row(handle), "fan")

    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        return _value(self._row(handle), self.CLOCK_KEYS[clock_type])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return _value(self._row(handle), "throttle")

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        return _value(self._row(handle), "pcie_gen")

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        return _value(self._row(handle), "pcie_width")

    def nvmlSystemGetDriverVersion(self) -> str:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        return _value({"v": self.driver_version}, "v")

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        if not self.initialised:
            raise NVMLError_Uninitialized()
        return _value({"v": self.cuda_version}, "v")


# pynvml's module-level bit constants, which GpuReader reads to name the throttle reasons.
for _name, _bit in THROTTLE.items():
    setattr(FakeNvml, f"nvmlClocksEventReason{_name}", _bit)
