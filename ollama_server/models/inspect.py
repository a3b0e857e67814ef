"""GGUF inspection from the header and tensor table only: what a model is, without loading its weights."""
from __future__ import annotations

import collections
import math
import os
import re
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Optional

from ollama_server.models import gguf
from ollama_server.models.ggml_types import FILE_TYPES
from ollama_server.models.ggml_types import tensor_bytes
from ollama_server.models.ggml_types import type_name

# Encoder-only architectures: they embed text but cannot continue it.
ENCODER_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
                                   "modern-bert", "neo-bert", "t5encoder"})
_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file says about its model; `error` is set (and most fields empty) when it is unreadable."""

    path: str
    file_size: int = 0
    error: str = ""
    architecture: str = ""
    parameter_count: int = 0
    size_label: str = ""
    file_type: str = ""
    tensor_types: dict[str, int] = field(default_factory=dict)
    context_length: Optional[int] = None
    embedding_length: Optional[int] = None
    block_count: Optional[int] = None
    head_count: Optional[int] = None
    head_count_kv: Optional[int] = None
    chat_template: Optional[str] = None
    capabilities: tuple[str, ...] = ()
    layer_bytes: tuple[int, ...] = ()
    non_layer_bytes: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all tensor data: the layers plus embeddings, norms and output."""
        return sum(self.layer_bytes) + sum(self.non_layer_bytes.values())

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest for listings (no metadata map, no per-tensor sizes)."""
        out = {"architecture": self.architecture, "parameter_count": self.parameter_count,
               "parameter_size": self.size_label, "quantization": self.file_type,
               "tensor_types": dict(self.tensor_types), "context_length": self.context_length,
               "embedding_length": self.embedding_length, "block_count": self.block_count,
               "head_count": self.head_count, "head_count_kv": self.head_count_kv,
               "has_chat_template": self.chat_template is not None, "capabilities": list(self.capabilities),
               "weight_bytes": self.weight_bytes}
        if self.error:
            out["error"] = self.error
        return out


def human_number(count: int) -> str:
    """Ollama's parameter count style: 3.2B, 268.10M, 500K."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
        if count >= scale:
            value = count / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(count)


def template_capabilities(template: Optional[str]) -> list[str]:
    """What a chat template (Jinja or an Ollama Go template) shows the model can do beyond completion."""
    if not template:
        return []
    found = []
    if "<think>" in template or "enable_thinking" in template:
        found.append("thinking")
    # The word, not a substring: Jinja's `tools` variable, Go templates' `.Tools` (not "toolset", say).
    if re.search(r"\btools\b", template, re.IGNORECASE):
        found.append("tools")
    return found


def capabilities(architecture: str, metadata: dict[str, Any], template: Optional[str]) -> tuple[str, ...]:
    """Ollama's capability names for a model: completion, embedding, thinking, tools."""
    found = [] if architecture in ENCODER_ARCHITECTURES else ["completion"]
    if architecture in ENCODER_ARCHITECTURES or f"{architecture}.pooling_type" in metadata:
        found.append("embedding")
    return tuple(found + template_capabilities(template))


def _int(value: Any) -> Optional[int]:
    # A per-layer array (summarised as a dict) or a missing key has no single value.
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tensor_facts(header: gguf.GgufHeader) -> tuple[dict, tuple, dict, str]:
    """(type counts, per-layer bytes, non-layer bytes, error) from the tensor table."""
    types: collections.Counter = collections.Counter()
    layers: dict[int, int] = collections.defaultdict(int)
    others: dict[str, int] = {}
    error = ""
    for tensor in header.tensors:
        types[type_name(tensor.ggml_type)] += 1
        size = tensor_bytes(tensor.shape, tensor.ggml_type)
        if size is None:
            continue
        end = header.data_offset + tensor.offset + size
        if end > header.file_size and not error:
            error = (f"file is truncated: tensor {tensor.name!r} ends at byte {end} "
                     f"but the file has {header.file_size} bytes")
        match = _LAYER.match(tensor.name)
        if match:
            layers[int(match.group(1))] += size
        else:
            others[tensor.name] = size
    per_layer = tuple(layers.get(i, 0) for i in range(max(layers) + 1)) if layers else ()
    return dict(sorted(types.items())), per_layer, others, error


def read_info(path: str) -> ModelInfo:
    """Inspect one GGUF file now (uncached); never raises for a bad file."""
    try:
        header = gguf.read_header(path)
    except gguf.GgufError as exc:
        return ModelInfo(path=path, file_size=_size(path), error=f"not a readable GGUF file: {exc}")
    except (OSError, ValueError) as exc:
        return ModelInfo(path=path, file_size=_size(path), error=f"cannot read the file: {exc}")
    meta = header.metadata
    arch = header.architecture if "general.architecture" in meta else ""
    types, per_layer, others, error = _tensor_facts(header)
    count = sum(math.prod(t.shape) for t in header.tensors) or _int(meta.get("general.parameter_count")) or 0
    label = meta.get("general.size_label")
    file_type = _int(meta.get("general.file_type"))
    template = header.chat_template
    # Named variants (tokenizer.chat_template.tool_use, ...) show capabilities too.
    templates = [template] + [value for key, value in meta.items()
                              if key.startswith("tokenizer.chat_template.") and isinstance(value, str)]
    return ModelInfo(
        path=path, file_size=header.file_size, error=error, architecture=arch, parameter_count=count,
        size_label=label if isinstance(label, str) and label else (human_number(count) if count else ""),
        file_type=FILE_TYPES.get(file_type, "") if file_type is not None else "", tensor_types=types,
        context_length=_int(header.arch_value("context_length")),
        embedding_length=_int(header.arch_value("embedding_length")),
        block_count=_int(header.arch_value("block_count")),
        head_count=_int(header.arch_value("attention.head_count")),
        head_count_kv=_int(header.arch_value("attention.head_count_kv")),
        chat_template=template, capabilities=capabilities(arch, meta, "\n".join(filter(None, templates))),
        layer_bytes=per_layer, non_layer_bytes=others, metadata=dict(meta))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Inspector:
    """Thread-safe inspection cache keyed by (path, size, mtime_ns): a changed file is read again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int], ModelInfo]] = {}

    def inspect(self, path: str) -> ModelInfo:
        """The cached ModelInfo for a path; a missing file gives an info with an error (not cached)."""
        path = str(path)
        try:
            stat = os.stat(path)
        except OSError as exc:
            return ModelInfo(path=path, error=f"cannot read the file: {exc.strerror or exc}")
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        info = read_info(path)  # parsed outside the lock: a slow file does not block other lookups
        with self._lock:
            self._cache[path] = (stamp, info)
        return info

    def clear(self) -> None:
        """Forget every cached result."""
        with self._lock:
            self._cache.clear()

