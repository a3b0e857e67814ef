"""What this llama.cpp build and the Python environment offer: versions, system info, GPU offload, ggml devices."""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import logging
import platform
from typing import Any
from typing import Optional

log = logging.getLogger(__name__)
# ggml-backend.h's enum ggml_backend_dev_type, in its order.
DEVICE_TYPES = ("cpu", "gpu", "igpu", "accel", "meta")


def package_version(distribution: str, module: Optional[str] = None) -> Optional[str]:
    """The installed version of a distribution, or None; never imports it (torch takes seconds to import)."""
    if importlib.util.find_spec(module or distribution) is None:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def python_version() -> str:
    """The interpreter's full version, e.g. 3.11.9."""
    return platform.python_version()


def llama_cpp_installed() -> bool:
    """True when llama-cpp-python can be imported (found, not imported)."""
    return importlib.util.find_spec("llama_cpp") is not None


def llama_cpp_version() -> Optional[str]:
    """llama-cpp-python's version, or None when it is not installed."""
    return package_version("llama-cpp-python", "llama_cpp")


def _llama_cpp() -> Any:
    """The llama_cpp module, imported on first use (loading its shared libraries); None when it fails."""
    try:
        import llama_cpp
    except Exception as exc:  # a broken build (missing CUDA runtime, say) is reported, not raised
        log.info("llama_cpp cannot be imported: %s", exc)
        return None
    return llama_cpp


def supports_gpu_offload() -> bool:
    """llama_supports_gpu_offload(): the build can put layers on a GPU (CUDA, Vulkan, Metal ...)."""
    llama_cpp = _llama_cpp()
    return bool(llama_cpp is not None and llama_cpp.llama_supports_gpu_offload())


def system_info() -> Optional[str]:
    """llama_print_system_info(): the CPU features and backends the build was compiled with."""
    llama_cpp = _llama_cpp()
    if llama_cpp is None:
        return None
    raw = llama_cpp.llama_print_system_info()
    return (raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)).strip()


@functools.lru_cache(maxsize=1)
def _ggml() -> Any:
    """libggml as llama_cpp loaded it, with the device functions' signatures declared; None when absent.
    llama-cpp-python 0.3.36 has no Python binding for them, so they are declared here from ggml-backend.h."""
    if _llama_cpp() is None:
        return None
    try:
        from llama_cpp import _ggml
        lib = _ggml.libggml
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_count.argtypes = []
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_type.restype = ctypes.c_int
        lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    except (ImportError, AttributeError, OSError) as exc:
        log.info("ggml device functions unavailable: %s", exc)
        return None
    return lib


def _text(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def backend_devices() -> Optional[list[dict[str, Any]]]:
    """The ggml backend devices llama.cpp can use: [{"index", "name", "description", "type"}]; None when the
    library cannot be asked. Memory is not queried: on CUDA that would create a context on every GPU."""
    lib = _ggml()
    if lib is None:
        return None
    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        if not device:
            continue
        kind = lib.ggml_backend_dev_type(device)
        devices.append({"index": index, "name": _text(lib.ggml_backend_dev_name(device)),
                        "description": _text(lib.ggml_backend_dev_description(device)),
                        "type": DEVICE_TYPES[kind] if 0 <= kind < len(DEVICE_TYPES) else f"unknown ({kind})"})
    return devices


def llama_cpp_report() -> dict[str, Any]:
    """Everything above in one JSON-ready dict (GET /diag's "llama_cpp")."""
    installed = llama_cpp_installed()
    importable = installed and _llama_cpp() is not None
    return {"installed": installed, "importable": importable, "version": llama_cpp_version(),
            "supports_gpu_offload": supports_gpu_offload() if importable else False,
            "system_info": system_info() if importable else None,
            "devices": backend_devices() if importable else None}
