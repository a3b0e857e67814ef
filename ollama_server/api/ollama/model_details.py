"""What Ollama's model listings show about a GGUF: details, digest, model_info, read from the header and cached."""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any
from typing import Optional

from ollama_server.models import gguf
from ollama_server.models.catalogue import ModelSpec

log = logging.getLogger(__name__)

# llama.cpp's `llama_ftype` enum (general.file_type) -> the name Ollama shows as quantization_level.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}
# Ollama's "never expires": now plus the largest Go duration (about 292 years).
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)


@dataclass(frozen=True)
class HeaderFacts:
    """The parts of a GGUF header that listings need; empty when the file cannot be parsed."""

    metadata: dict = field(default_factory=dict)
    parameter_count: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


@functools.lru_cache(maxsize=64)
def _facts(path: str, size: int, mtime_ns: int) -> HeaderFacts:
    """Header facts of one version of a file (the key changes when the file does)."""
    try:
        header = gguf.read_header(path)
    except (OSError, gguf.GgufError) as exc:
        log.info("cannot read the GGUF header of %s: %s", path, exc)
        return HeaderFacts()
    count = header.metadata.get("general.parameter_count")
    if not isinstance(count, int):
        count = sum(math.prod(t.shape) for t in header.tensors)
    return HeaderFacts(metadata=dict(header.metadata), parameter_count=count)


def header_facts(path: str) -> HeaderFacts:
    """Cached header facts for a GGUF path; a missing file gives empty facts."""
    try:
        stat = os.stat(path)
    except OSError:
        return HeaderFacts()
    return _facts(path, stat.st_size, stat.st_mtime_ns)


def human_number(count: int) -> str:
    """Ollama's parameter count style: 3.2B, 268.10M, 500K."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(count)


def details(spec: ModelSpec) -> dict:
    """The `details` object of /api/tags, /api/show and /api/ps."""
    facts = header_facts(spec.path)
    meta = facts.metadata
    family = facts.architecture
    size_label = meta.get("general.size_label")
    if isinstance(size_label, str) and size_label:
        parameter_size = size_label
    else:
        parameter_size = human_number(facts.parameter_count) if facts.parameter_count else ""
    file_type = meta.get("general.file_type")
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else [],
        "parameter_size": parameter_size,
        "quantization_level": FILE_TYPES.get(file_type, "") if isinstance(file_type, int) else "",
    }


def digest(spec: ModelSpec) -> str:
    """64 hex digits identifying the model file."""
    if spec.digest:
        return spec.digest.removeprefix("sha256:").removeprefix("sha256-")
    # Placeholder until the model store provides manifest digests: a hash of the file's identity
    # (name, path, size, mtime), never of its contents, so that listing stays instant.
    identity = f"{spec.name}:{spec.path}:{spec.size_bytes}:{spec.modified_at.timestamp()}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _summarised(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"array_of", "length"}


def model_info(spec: ModelSpec, verbose: bool = False) -> dict[str, Any]:
    """The GGUF key/value map; arrays are empty lists unless verbose (as Ollama shows them)."""
    if verbose:
        try:
            metadata = dict(gguf.read_header(spec.path, keep_arrays=True).metadata)
        except (OSError, gguf.GgufError):
            metadata = {}
    else:
        metadata = header_facts(spec.path).metadata
    info = {key: ([] if _summarised(value) else value) for key, value in metadata.items()
            if key != "tokenizer.chat_template"}
    if metadata and "general.parameter_count" not in info:
        count = header_facts(spec.path).parameter_count
        if count:
            info["general.parameter_count"] = count
    return info


def chat_template(spec: ModelSpec) -> str:
    """The model's own template (a Modelfile override first, else the GGUF's Jinja template)."""
    if spec.template:
        return spec.template
    value = header_facts(spec.path).metadata.get("tokenizer.chat_template")
    return value if isinstance(value, str) else ""


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, microsecond precision."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(timezone.utc))


def expires_rfc3339(expires_at: Optional[float]) -> str:
    """When a loaded model will be unloaded; None (forever) is a date ~292 years ahead, like Ollama."""
    if expires_at is None:
        return rfc3339(datetime.now(timezone.utc) + _FOREVER)
    return rfc3339(datetime.fromtimestamp(expires_at, tz=timezone.utc))


def parameters_text(parameters: dict) -> str:
    """Modelfile PARAMETERs as Ollama prints them: one `key value` line each, lists one line per item."""
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            shown = f'"{item}"' if isinstance(item, str) else str(item)
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


def modelfile(spec: ModelSpec) -> str:
    """A Modelfile that would rebuild this model from its GGUF."""
    parts = ['# Modelfile generated by "ollama show"', "# To build a new Modelfile based on this, replace FROM with:",
             f"# FROM {spec.name}", "", f"FROM {spec.path}"]
    template = chat_template(spec)
    if template:
        parts.append(f'TEMPLATE """{template}"""')
    if spec.system:
        parts.append(f'SYSTEM """{spec.system}"""')
    parts.extend(f"PARAMETER {line}" for line in parameters_text(spec.parameters).splitlines())
    return "\n".join(parts) + "\n"
