"""What Ollama's model listings show about a GGUF: details, digest, model_info, from the cached inspection."""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from typing import Any
from typing import Optional

from ollama_server.api.errors import ApiError
from ollama_server.models import gguf
from ollama_server.models import inspect
from ollama_server.models import names
from ollama_server.models.catalogue import ModelSpec
from ollama_server.services import services

log = logging.getLogger(__name__)
human_number = inspect.human_number  # kept here for callers of the seed's name

# Ollama's "never expires": now plus the largest Go duration (about 292 years).
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)
# Every capability shown is served (tools by /api/chat, engine/tool_calls.py): nothing is held back.
_UNSERVED_CAPABILITIES: set[str] = set()


def find(name: Any, param: str = "model") -> ModelSpec:
    """The catalogue entry for a name from a request: 400 if it is not a valid name, 404 if unknown."""
    if not isinstance(name, str) or not name:
        raise ApiError("invalid_request", f"{param} is required", param=param)
    try:
        names.normalize(name)
    except names.InvalidModelName:
        raise ApiError("invalid_request", f"invalid model name {name[:200]!r}", param=param) from None
    spec = services().catalogue.get(name)
    if spec is None:
        raise ApiError("not_found", f"model '{name}' not found", param=param)
    return spec


def info(spec: ModelSpec) -> inspect.ModelInfo:
    """The cached inspection of a model's GGUF (nothing but the size when inspection is switched off)."""
    return services().store.info(spec)


def details(spec: ModelSpec) -> dict:
    """The `details` object of /api/tags, /api/show and /api/ps."""
    facts = info(spec)
    family = facts.architecture
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family] if family else [],
        "parameter_size": facts.size_label,
        "quantization_level": facts.file_type,
    }


def capabilities(spec: ModelSpec) -> list[str]:
    """Capabilities from the GGUF and its template (a Modelfile TEMPLATE counts too), as served here."""
    found = list(info(spec).capabilities) or ["completion"]
    found += [c for c in inspect.template_capabilities(spec.template) if c not in found]
    return [c for c in found if c not in _UNSERVED_CAPABILITIES]


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
    facts = info(spec)
    metadata = facts.metadata
    if verbose and metadata:
        try:
            metadata = dict(gguf.read_header(spec.path, keep_arrays=True).metadata)
        except (OSError, gguf.GgufError):
            pass
    shown = {key: ([] if _summarised(value) else value) for key, value in metadata.items()
             if key != "tokenizer.chat_template"}
    if metadata and "general.parameter_count" not in shown and facts.parameter_count:
        shown["general.parameter_count"] = facts.parameter_count
    return shown


def chat_template(spec: ModelSpec) -> str:
    """The model's own template (a Modelfile override first, else the GGUF's Jinja template)."""
    return spec.template or info(spec).chat_template or ""


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
