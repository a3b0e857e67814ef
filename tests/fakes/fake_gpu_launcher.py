"""`python -m tests.fakes.fake_gpu_launcher [server args]`: the real server, its NVML replaced by four fake GPUs."""
from __future__ import annotations

import os
import sys

from tests.fakes.nvml import FakeNvml

# Which FakeNvml scenario to install; four cards whose every field differs by default.
SCENARIO_ENV = "FAKE_NVML_SCENARIO"
DEFAULT_SCENARIO = "four_detailed"


def install_fake_nvml(scenario: str = DEFAULT_SCENARIO) -> FakeNvml:
    """Put a FakeNvml where `import pynvml` will find it, ahead of any installed nvidia-ml-py."""
    fake = FakeNvml(scenario)
    # GpuReader imports pynvml lazily, in the gunicorn worker; the worker is forked from this process,
    # so it inherits sys.modules and the import returns this object instead of loading libnvidia-ml.
    sys.modules["pynvml"] = fake  # type: ignore[assignment]
    return fake


def main(argv: list[str] | None = None) -> int:
    """Install the fake NVML, then run the real entry point with the same arguments."""
    install_fake_nvml(os.environ.get(SCENARIO_ENV, DEFAULT_SCENARIO))
    from ollama_server.__main__ import main as server_main
    return server_main(argv)


if __name__ == "__main__":
    sys.exit(main())
