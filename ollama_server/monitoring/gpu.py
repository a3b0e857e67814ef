"""GPU samples through NVML (nvidia-ml-py's `pynvml`): one reader, one probe, one guarded call per field."""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)

# Fallback when the NVML module defines no reason constants; the bits are NVML's (nvml.h).
_BUILTIN_REASONS = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
                    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
                    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting"}
_REASON_PREFIXES = ("nvmlClocksEventReason", "nvmlClocksThrottleReason")
_REASON_SKIP = {"All", "None", "UserDefinedClocks"}  # masks, and an alias of ApplicationsClocksSetting (0x2)


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment; a field is None when the driver does not report it."""

    index: int
    name: Optional[str] = None
    uuid: Optional[str] = None
    memory_total_bytes: Optional[int] = None
    memory_used_bytes: Optional[int] = None
    memory_free_bytes: Optional[int] = None
    utilization_percent: Optional[float] = None
    memory_utilization_percent: Optional[float] = None
    temperature_celsius: Optional[float] = None
    power_watts: Optional[float] = None
    power_limit_watts: Optional[float] = None
    power_min_limit_watts: Optional[float] = None
    power_max_limit_watts: Optional[float] = None
    fan_speed_percent: Optional[float] = None
    clock_graphics_mhz: Optional[int] = None
    clock_sm_mhz: Optional[int] = None
    clock_memory_mhz: Optional[int] = None
    throttle_reasons: Optional[tuple[str, ...]] = None  # decoded names; () means "not throttled"
    throttle_bits: Optional[int] = None
    pcie_generation: Optional[int] = None
    pcie_width: Optional[int] = None
    lost: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        if self.throttle_reasons is not None:
            data["throttle_reasons"] = list(self.throttle_reasons)
        return data


class _Lost(Exception):
    """The GPU fell off the bus (NVMLError_GpuIsLost): the whole device is gone, not one field."""


class GpuReader:
    """Reads every GPU through an NVML module (`pynvml` unless one is injected); never raises to callers."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml
        self._lock = threading.Lock()
        self._probed = False
        self._initialised = False
        self.available = False
        self.reason = ""
        self.devices: list[int] = []
        self.driver_version: Optional[str] = None
        self.cuda_version: Optional[str] = None
        self._reasons: dict[int, str] = {}
        self._known: dict[int, tuple[Optional[str], Optional[str]]] = {}  # index -> last (name, uuid)

    # --- setup -------------------------------------------------------------------------------
    @property
    def nvml(self) -> Any:
        """The NVML module this reader initialised (after a successful probe()), for callers that set limits."""
        return self._nvml

    def probe(self) -> bool:
        """Initialise NVML once; False (with `reason`) when there is no library, driver or GPU."""
        with self._lock:
            if self._probed:
                return self.available
            self._probed = True
            if self._nvml is None:
                try:
                    import pynvml  # imported here: importing this module must not touch NVML
                except ImportError:
                    self.reason = "nvidia-ml-py (pynvml) is not installed"
                    return False
                self._nvml = pynvml
            nvml = self._nvml
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                self.reason = f"NVML unavailable: {_text(exc) or type(exc).__name__}"
                log.info("no GPU monitoring: %s", self.reason)
                return False
            self._initialised = True
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as exc:
                self.reason = f"cannot count GPUs: {_text(exc) or type(exc).__name__}"
                return False
            self.driver_version = _decode(self._system("nvmlSystemGetDriverVersion"))
            self.cuda_version = format_cuda_version(self._system("nvmlSystemGetCudaDriverVersion_v2"))
            self._reasons = reason_table(nvml)
            self.devices = list(range(count))
            self.available = count > 0
            self.reason = "" if count else "NVML reports no GPU"
            return self.available

    def close(self) -> None:
        """Shut NVML down if this reader initialised it."""
        with self._lock:
            if self._initialised:
                try:
                    self._nvml.nvmlShutdown()
                except self._nvml.NVMLError:
                    pass
            self._probed = self._initialised = self.available = False
            self.devices = []
            self._known = {}

    def _system(self, function: str) -> Any:
        """A system-wide query; None when it fails or this binding/driver lacks it (FunctionNotFound)."""
        call = getattr(self._nvml, function, None)
        if call is None:
            return None
        try:
            return call()
        except self._nvml.NVMLError as exc:
            log.debug("%s: %s", function, _text(exc) or type(exc).__name__)
            return None

    # --- reading -----------------------------------------------------------------------------
    def read(self) -> list[GpuSample]:
        """One sample per GPU in NVML index order; [] without NVML; a lost GPU is marked `lost`."""
        if not self.probe():
            return []
        return [self._read_one(index) for index in self.devices]

    def _read_one(self, index: int) -> GpuSample:
        # A lost GPU keeps the name and uuid of its last good read, so alerts can say which card went.
        name, uuid = self._known.get(index, (None, None))
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as exc:
            return GpuSample(index=index, name=name, uuid=uuid, lost=True, error=_text(exc) or type(exc).__name__)
        try:
            sample = self._sample(index, handle)
        except _Lost as exc:
            return GpuSample(index=index, name=name, uuid=uuid, lost=True, error=str(exc))
        self._known[index] = (sample.name, sample.uuid)
        return sample

    def _sample(self, index: int, handle: Any) -> GpuSample:
        """Every field of one GPU; _Lost escapes when it falls off the bus mid-read."""
        memory, rates, limits = self.memory(handle), self.utilization_rates(handle), self.power_limits(handle)
        bits = self.throttle(handle)
        return GpuSample(
            index=index, name=self.name(handle), uuid=self.uuid(handle),
            memory_total_bytes=_attr(memory, "total"), memory_used_bytes=_attr(memory, "used"),
            memory_free_bytes=_attr(memory, "free"),
            utilization_percent=_fattr(rates, "gpu"), memory_utilization_percent=_fattr(rates, "memory"),
            temperature_celsius=self.temperature(handle), power_watts=self.power(handle),
            power_limit_watts=self.power_limit(handle),
            power_min_limit_watts=None if limits is None else limits[0] / 1000.0,
            power_max_limit_watts=None if limits is None else limits[1] / 1000.0,
            fan_speed_percent=self.fan_speed(handle), clock_graphics_mhz=self.clock_graphics(handle),
            clock_sm_mhz=self.clock_sm(handle), clock_memory_mhz=self.clock_memory(handle),
            throttle_bits=bits, throttle_reasons=None if bits is None else decode_reasons(bits, self._reasons),
            pcie_generation=self.pcie_generation(handle), pcie_width=self.pcie_width(handle))

    def _query(self, call: Optional[Callable[..., Any]], *args: Any) -> Any:
        """Call one NVML function: NVMLError (NotSupported included) -> None; GpuIsLost -> _Lost."""
        nvml = self._nvml
        if call is None:  # a binding older than the call
            return None
        try:
            return call(*args)
        except nvml.NVMLError_GpuIsLost as exc:
            raise _Lost(_text(exc) or "GPU is lost") from None
        except nvml.NVMLError as exc:
            log.debug("%s: %s", getattr(call, "__name__", call), _text(exc) or type(exc).__name__)
            return None

    def _number(self, function: str, *args: Any, scale: float = 1.0) -> Optional[float]:
        value = self._query(getattr(self._nvml, function, None), *args)
        return None if value is None else float(value) / scale

    def _int(self, function: str, *args: Any) -> Optional[int]:
        value = self._query(getattr(self._nvml, function, None), *args)
        return None if value is None else int(value)

    def name(self, handle: Any) -> Optional[str]:
        """nvidia-smi --query-gpu=name"""
        return _decode(self._query(self._nvml.nvmlDeviceGetName, handle))

    def uuid(self, handle: Any) -> Optional[str]:
        """nvidia-smi --query-gpu=uuid"""
        return _decode(self._query(self._nvml.nvmlDeviceGetUUID, handle))

    def memory(self, handle: Any) -> Any:
        """nvidia-smi --query-gpu=memory.total,memory.used,memory.free (bytes here, MiB there)"""
        return self._query(self._nvml.nvmlDeviceGetMemoryInfo, handle)

    def utilization_rates(self, handle: Any) -> Any:
        """nvidia-smi --query-gpu=utilization.gpu,utilization.memory"""
        return self._query(self._nvml.nvmlDeviceGetUtilizationRates, handle)

    def temperature(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=temperature.gpu"""
        return self._number("nvmlDeviceGetTemperature", handle, self._nvml.NVML_TEMPERATURE_GPU)

    def power(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=power.draw (watts; NVML reports milliwatts)"""
        return self._number("nvmlDeviceGetPowerUsage", handle, scale=1000.0)

    def power_limit(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=power.limit (watts; NVML reports milliwatts)"""
        return self._number("nvmlDeviceGetPowerManagementLimit", handle, scale=1000.0)

    def power_limits(self, handle: Any) -> Optional[tuple[int, int]]:
        """nvidia-smi --query-gpu=power.min_limit,power.max_limit (milliwatts, as NVML gives them)"""
        value = self._query(getattr(self._nvml, "nvmlDeviceGetPowerManagementLimitConstraints", None), handle)
        return None if value is None else (int(value[0]), int(value[1]))

    def fan_speed(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=fan.speed (%; passively cooled cards raise NotSupported)"""
        return self._number("nvmlDeviceGetFanSpeed", handle)

    def clock_graphics(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=clocks.gr (MHz)"""
        return self._int("nvmlDeviceGetClockInfo", handle, getattr(self._nvml, "NVML_CLOCK_GRAPHICS", 0))

    def clock_sm(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=clocks.sm (MHz)"""
        return self._int("nvmlDeviceGetClockInfo", handle, getattr(self._nvml, "NVML_CLOCK_SM", 1))

    def clock_memory(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=clocks.mem (MHz)"""
        return self._int("nvmlDeviceGetClockInfo", handle, getattr(self._nvml, "NVML_CLOCK_MEM", 2))

    def throttle(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=clocks_throttle_reasons.active (clocks_event_reasons.active; a bitmask)"""
        # The "event" call replaced the deprecated "throttle" one; older bindings have only the latter.
        function = getattr(self._nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) \
            or getattr(self._nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        value = self._query(function, handle)
        return None if value is None else int(value)

    def pcie_generation(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=pcie.link.gen.current (idle GPUs downshift, so compare under load)"""
        return self._int("nvmlDeviceGetCurrPcieLinkGeneration", handle)

    def pcie_width(self, handle: Any) -> Optional[int]:
        """nvidia-smi --query-gpu=pcie.link.width.current (lanes)"""
        return self._int("nvmlDeviceGetCurrPcieLinkWidth", handle)


def reason_table(nvml: Any) -> dict[int, str]:
    """Bit -> snake_case name from the module's nvmlClocksEventReason*/ThrottleReason* constants."""
    table: dict[int, str] = {}
    for prefix in _REASON_PREFIXES:  # event names first: they are the current ones
        for attr in sorted(dir(nvml)):
            suffix = attr[len(prefix):]
            if not attr.startswith(prefix) or suffix in _REASON_SKIP:
                continue
            bit = getattr(nvml, attr)
            if isinstance(bit, int) and bit and not bit & (bit - 1):  # single bits only
                table.setdefault(bit, _snake(suffix))
    return table or dict(_BUILTIN_REASONS)


def decode_reasons(bits: int, table: Optional[dict[int, str]] = None) -> tuple[str, ...]:
    """Names of the set bits, lowest first; unknown bits become `unknown_0x...`."""
    table = table or _BUILTIN_REASONS
    names, bit = [], 1
    while bit <= bits:
        if bits & bit:
            names.append(table.get(bit, f"unknown_{bit:#x}"))
        bit <<= 1
    return tuple(names)


def format_cuda_version(value: Any) -> Optional[str]:
    """NVML's 12040 -> "12.4" (major*1000 + minor*10, as nvidia-smi's header shows it)."""
    if value is None:
        return None
    value = int(value)
    return f"{value // 1000}.{(value % 1000) // 10}"


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _attr(value: Any, name: str) -> Optional[int]:
    return None if value is None else int(getattr(value, name))


def _fattr(value: Any, name: str) -> Optional[float]:
    return None if value is None else float(getattr(value, name))


def _decode(value: Any) -> Optional[str]:
    # Older nvidia-ml-py releases return bytes.
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # pynvml's __str__ calls into the library, which may be missing
        return ""
