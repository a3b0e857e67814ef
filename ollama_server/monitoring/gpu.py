"""GPU samples through NVML (nvidia-ml-py's `pynvml`): one reader, one probe, one guarded call per field."""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)


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
    temperature_celsius: Optional[float] = None
    power_watts: Optional[float] = None
    lost: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


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

    # --- setup -------------------------------------------------------------------------------
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

    # --- reading -----------------------------------------------------------------------------
    def read(self) -> list[GpuSample]:
        """One sample per GPU in NVML index order; [] without NVML; a lost GPU is marked `lost`."""
        if not self.probe():
            return []
        return [self._read_one(index) for index in self.devices]

    def _read_one(self, index: int) -> GpuSample:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as exc:
            return GpuSample(index=index, lost=True, error=_text(exc) or type(exc).__name__)
        try:
            memory = self.memory(handle)
            return GpuSample(
                index=index, name=self.name(handle), uuid=self.uuid(handle),
                memory_total_bytes=_attr(memory, "total"), memory_used_bytes=_attr(memory, "used"),
                memory_free_bytes=_attr(memory, "free"), utilization_percent=self.utilization(handle),
                temperature_celsius=self.temperature(handle), power_watts=self.power(handle))
        except _Lost as exc:
            return GpuSample(index=index, lost=True, error=str(exc))

    def _query(self, call: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML function: NVMLError (NotSupported included) -> None; GpuIsLost -> _Lost."""
        nvml = self._nvml
        try:
            return call(*args)
        except nvml.NVMLError_GpuIsLost as exc:
            raise _Lost(_text(exc) or "GPU is lost") from None
        except nvml.NVMLError as exc:
            log.debug("%s: %s", getattr(call, "__name__", call), _text(exc) or type(exc).__name__)
            return None

    def name(self, handle: Any) -> Optional[str]:
        """nvidia-smi --query-gpu=name"""
        return _decode(self._query(self._nvml.nvmlDeviceGetName, handle))

    def uuid(self, handle: Any) -> Optional[str]:
        """nvidia-smi --query-gpu=uuid"""
        return _decode(self._query(self._nvml.nvmlDeviceGetUUID, handle))

    def memory(self, handle: Any) -> Any:
        """nvidia-smi --query-gpu=memory.total,memory.used,memory.free (bytes here, MiB there)"""
        return self._query(self._nvml.nvmlDeviceGetMemoryInfo, handle)

    def utilization(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=utilization.gpu"""
        rates = self._query(self._nvml.nvmlDeviceGetUtilizationRates, handle)
        return None if rates is None else float(rates.gpu)

    def temperature(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=temperature.gpu"""
        value = self._query(self._nvml.nvmlDeviceGetTemperature, handle, self._nvml.NVML_TEMPERATURE_GPU)
        return None if value is None else float(value)

    def power(self, handle: Any) -> Optional[float]:
        """nvidia-smi --query-gpu=power.draw (watts; NVML reports milliwatts)"""
        milliwatts = self._query(self._nvml.nvmlDeviceGetPowerUsage, handle)
        return None if milliwatts is None else milliwatts / 1000.0


def _attr(value: Any, name: str) -> Optional[int]:
    return None if value is None else int(getattr(value, name))


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
