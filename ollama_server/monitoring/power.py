"""Power profiles (quiet/normal/max): every GPU's power limit through NVML, persisted, all-or-nothing."""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import Optional

log = logging.getLogger(__name__)

DEFAULT_PROFILE = "normal"
NO_GPU = "no NVIDIA GPU available: power profiles need NVML"
# Setting a power limit is a root-only NVML call; the seed's deployment gives the service user a sudoers rule.
NO_PERMISSION_HINT = ("setting a GPU power limit needs root: run the server as root (or with CAP_SYS_ADMIN), "
                      "or give the service user a sudoers rule for `nvidia-smi -pl` as the seed's deployment "
                      "does, with persistence mode on (`nvidia-smi -pm 1`) so the limit holds")


@dataclass(frozen=True)
class Profile:
    """One profile of seed §5.4."""

    power_limit_w: int
    max_concurrent_jobs: int
    description: str

    def to_dict(self) -> dict[str, Any]:
        """The seed's profile object."""
        return {"power_limit_w": self.power_limit_w, "max_concurrent_jobs": self.max_concurrent_jobs,
                "description": self.description}


PROFILES: dict[str, Profile] = {
    "quiet": Profile(220, 1, "Low power, quiet operation"),
    "normal": Profile(280, 1, "Balanced performance"),
    "max": Profile(350, 2, "Maximum performance"),
}


class PowerProfileError(Exception):
    """Applying a profile failed: the HTTP status it means and a message for the caller."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Gpu:
    """What apply() learned about one GPU before touching any of them."""

    index: int
    handle: Any
    name: Optional[str]
    previous_mw: int
    constraints: Optional[tuple[int, int]]


class PowerProfiles:
    """The current profile (persisted in `state_path`) and applying one to every GPU.

    `gpu` is a GpuReader (its NVML session is shared) or an NVML module such as pynvml; None imports pynvml."""

    def __init__(self, gpu: Any, state_path: Path):
        self._source = gpu
        self.state_path = Path(state_path)
        self._lock = threading.Lock()
        self._current, self._saved = self._load()

    # --- state -------------------------------------------------------------------------------
    @property
    def current(self) -> str:
        """The name of the profile in force (the saved one, else "normal")."""
        return self._current

    @property
    def max_concurrent_jobs(self) -> int:
        """How many jobs may run at once under the current profile (read by the job worker each time)."""
        return PROFILES[self._current].max_concurrent_jobs

    def describe(self) -> dict[str, Any]:
        """GET /settings/power_profile: {"current", "profiles", "max_concurrent_jobs"}."""
        return {"current": self._current, "profiles": {name: p.to_dict() for name, p in PROFILES.items()},
                "max_concurrent_jobs": self.max_concurrent_jobs}

    def _load(self) -> tuple[str, bool]:
        """(profile name, whether one was saved); a missing or unreadable file means the default."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return DEFAULT_PROFILE, False
        except (OSError, ValueError) as exc:
            log.warning("ignoring power profile state %s: %s", self.state_path, exc)
            return DEFAULT_PROFILE, False
        name = data.get("profile") if isinstance(data, dict) else None
        if name not in PROFILES:
            log.warning("ignoring power profile state %s: unknown profile %r", self.state_path, name)
            return DEFAULT_PROFILE, False
        return name, True

    def _save(self, name: str) -> None:
        # Written beside and renamed, so a crash never leaves a half-written state file.
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps({"profile": name, "applied_at": datetime.now().isoformat(timespec="seconds")}))
        os.replace(tmp, self.state_path)

    # --- applying ----------------------------------------------------------------------------
    def apply(self, name: str) -> dict[str, Any]:
        """Set every GPU's power limit to the profile's (clamped to the card's range) and persist the choice.

        Raises PowerProfileError (400 unknown profile, 403 no permission, 503 no GPU/NVML, 500 otherwise);
        GPUs already set are put back first, and the persisted profile is unchanged."""
        if name not in PROFILES:
            raise PowerProfileError(400, f"Invalid profile. Choose from: {list(PROFILES)}")
        profile = PROFILES[name]
        with self._lock:
            nvml, indices, own_session = self._session()
            try:
                gpus = self._survey(nvml, indices)
                applied = self._set_all(nvml, gpus, profile.power_limit_w * 1000)
            finally:
                if own_session:
                    _quietly(nvml, "nvmlShutdown")
            self._save(name)
            self._current, self._saved = name, True
        log.info("power profile %s applied: %s", name,
                 ", ".join(f"GPU {g['index']} {g['power_limit_w']:g} W" for g in applied))
        return {"status": "success", "profile": name, "power_limit_w": profile.power_limit_w,
                "max_concurrent_jobs": profile.max_concurrent_jobs, "gpus": applied}

    def apply_saved(self) -> Optional[dict[str, Any]]:
        """At start: apply the persisted profile again (limits reset on reboot); logs, never raises."""
        if not self._saved:
            return None
        try:
            return self.apply(self._current)
        except PowerProfileError as exc:
            log.warning("power profile %s not applied at start: %s", self._current, exc.message)
        except Exception:  # a broken driver must not stop the server from starting
            log.exception("power profile %s not applied at start", self._current)
        return None

    def _session(self) -> tuple[Any, list[int], bool]:
        """(NVML module, GPU indices, whether this call initialised NVML itself); 503 without GPUs."""
        source = self._source
        if hasattr(source, "probe"):  # a GpuReader: reuse its NVML session
            if not source.probe():
                raise PowerProfileError(503, f"{NO_GPU} ({source.reason})" if source.reason else NO_GPU)
            return source.nvml, list(source.devices), False
        nvml = source
        if nvml is None:
            try:
                import pynvml as nvml  # imported here: building this object must not touch NVML
            except ImportError:
                raise PowerProfileError(503, f"{NO_GPU} (nvidia-ml-py is not installed)") from None
            self._source = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise PowerProfileError(503, f"{NO_GPU} ({_text(exc)})") from None
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            _quietly(nvml, "nvmlShutdown")
            raise PowerProfileError(503, f"{NO_GPU} ({_text(exc)})") from None
        if count == 0:
            _quietly(nvml, "nvmlShutdown")
            raise PowerProfileError(503, NO_GPU)
        return nvml, list(range(count)), True

    def _survey(self, nvml: Any, indices: list[int]) -> list[_Gpu]:
        """Handle, name, current limit and allowed range of every GPU, read before any is changed."""
        if not indices:
            raise PowerProfileError(503, NO_GPU)
        gpus = []
        for index in indices:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                previous = int(nvml.nvmlDeviceGetPowerManagementLimit(handle))
            except nvml.NVMLError as exc:
                raise _failure(nvml, exc, f"cannot read GPU {index}'s power limit") from None
            gpus.append(_Gpu(index, handle, _name(nvml, handle), previous, _constraints(nvml, handle)))
        return gpus

    def _set_all(self, nvml: Any, gpus: list[_Gpu], requested_mw: int) -> list[dict[str, Any]]:
        """Set each GPU in turn; when one refuses, restore those already set and raise."""
        applied: list[dict[str, Any]] = []
        for position, gpu in enumerate(gpus):
            target = requested_mw
            if gpu.constraints is not None:
                target = min(max(requested_mw, gpu.constraints[0]), gpu.constraints[1])
            try:
                nvml.nvmlDeviceSetPowerManagementLimit(gpu.handle, target)
            except nvml.NVMLError as exc:
                self._restore(nvml, gpus[:position])
                raise _failure(nvml, exc, f"cannot set GPU {gpu.index} ({gpu.name or 'unnamed'}) "
                                          f"to {target / 1000:g} W") from None
            applied.append({"index": gpu.index, "name": gpu.name, "power_limit_w": target / 1000,
                            "clamped": target != requested_mw})
        return applied

    def _restore(self, nvml: Any, gpus: list[_Gpu]) -> None:
        for gpu in gpus:
            try:
                nvml.nvmlDeviceSetPowerManagementLimit(gpu.handle, gpu.previous_mw)
            except nvml.NVMLError as exc:  # nothing more to do than say so
                log.error("could not restore GPU %d's power limit to %g W: %s", gpu.index,
                          gpu.previous_mw / 1000, _text(exc))


def _failure(nvml: Any, exc: Exception, what: str) -> PowerProfileError:
    """403 for NVML's NoPermission, 503 for a missing driver/library, else 500 (the seed's wording)."""
    no_permission = getattr(nvml, "NVMLError_NoPermission", None)
    if isinstance(no_permission, type) and isinstance(exc, no_permission):
        return PowerProfileError(403, f"Failed to set power profile: {what}: {_text(exc)}; {NO_PERMISSION_HINT}")
    return PowerProfileError(500, f"Failed to set power profile: {what}: {_text(exc)}")


def _constraints(nvml: Any, handle: Any) -> Optional[tuple[int, int]]:
    """(min, max) milliwatts; None when the card does not say (the limit is then set unclamped)."""
    call = getattr(nvml, "nvmlDeviceGetPowerManagementLimitConstraints", None)
    if call is None:
        return None
    try:
        low, high = call(handle)
    except nvml.NVMLError:
        return None
    return int(low), int(high)


def _name(nvml: Any, handle: Any) -> Optional[str]:
    try:
        name = nvml.nvmlDeviceGetName(handle)
    except nvml.NVMLError:
        return None
    return name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name


def _quietly(nvml: Any, function: str) -> None:
    try:
        getattr(nvml, function)()
    except Exception:
        pass


def _text(exc: BaseException) -> str:
    try:
        return str(exc) or type(exc).__name__
    except Exception:  # pynvml's __str__ calls into the library, which may be missing
        return type(exc).__name__
