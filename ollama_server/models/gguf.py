"""Reads a GGUF file's header and tensor table (never the weights)."""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"GGUF"

# GGUF value types -> struct format for the scalar ones.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class GgufError(ValueError):
    """The file is not a readable GGUF (wrong magic, truncated, corrupt)."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int


@dataclass(frozen=True)
class GgufHeader:
    """The key/value metadata and tensor table of a GGUF file."""

    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    file_size: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """`<architecture>.<key>`, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def context_length(self) -> int | None:
        value = self.arch_value("context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None


class _Cursor:
    def __init__(self, buffer: memoryview, size: int):
        self.buffer, self.size, self.pos = buffer, size, 0

    def take(self, fmt: str) -> Any:
        width = struct.calcsize(fmt)
        if self.pos + width > self.size:
            raise GgufError("file is truncated inside the header")
        (value,) = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += width
        return value

    def string(self, keep: bool = True) -> str:
        length = self.take("<Q")
        if self.pos + length > self.size:
            raise GgufError("file is truncated inside a string")
        start, self.pos = self.pos, self.pos + length
        if not keep:
            return ""
        return bytes(self.buffer[start:self.pos]).decode("utf-8", errors="replace")

    def value(self, kind: int, keep_arrays: bool) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.take("<I"), self.take("<Q")
            if count > self.size:
                raise GgufError("array length is larger than the file")
            if not keep_arrays and item_kind in _SCALARS:
                self.pos += struct.calcsize(_SCALARS[item_kind]) * count
                if self.pos > self.size:
                    raise GgufError("file is truncated inside an array")
                return {"array_of": item_kind, "length": count}
            if not keep_arrays and item_kind == _STRING:
                self._skip_strings(count)
                return {"array_of": item_kind, "length": count}
            items = [self.value(item_kind, keep_arrays) if keep_arrays else self._skip(item_kind)
                     for _ in range(count)]
            return items if keep_arrays else {"array_of": item_kind, "length": count}
        raise GgufError(f"unknown metadata value type {kind}")

    def _skip_strings(self, count: int) -> None:
        # A vocabulary holds ~10^5 strings: a tight local loop is several times faster than string().
        unpack, buffer, pos, size = _U64.unpack_from, self.buffer, self.pos, self.size
        for _ in range(count):
            if pos + 8 > size:
                raise GgufError("file is truncated inside an array")
            pos += 8 + unpack(buffer, pos)[0]
        if pos > size:
            raise GgufError("file is truncated inside an array")
        self.pos = pos

    def _skip(self, kind: int) -> None:
        if kind == _STRING:
            self.string(keep=False)
        else:
            self.value(kind, keep_arrays=False)


def read_header(path: str, keep_arrays: bool = False) -> GgufHeader:
    """Parse the header; large arrays (the vocabulary) are summarised unless keep_arrays."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        if size < 24:
            raise GgufError("file is too small to be a GGUF")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return _parse(_Cursor(view, size), keep_arrays)
            finally:
                view.release()


def _parse(cursor: _Cursor, keep_arrays: bool) -> GgufHeader:
    if bytes(cursor.buffer[:4]) != MAGIC:
        raise GgufError("not a GGUF file (bad magic)")
    cursor.pos = 4
    version = cursor.take("<I")
    if version not in (2, 3):
        raise GgufError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = cursor.take("<Q"), cursor.take("<Q")
    if tensor_count > cursor.size or kv_count > cursor.size:
        raise GgufError("header counts are larger than the file")
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.take("<I"), keep_arrays)
    tensors = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = cursor.take("<I")
        if dims > 8:
            raise GgufError(f"tensor {name!r} has {dims} dimensions")
        shape = tuple(cursor.take("<Q") for _ in range(dims))
        tensors.append(TensorInfo(name, shape, cursor.take("<I"), cursor.take("<Q")))
    alignment = int(metadata.get("general.alignment", 32)) or 32
    data_offset = -(-cursor.pos // alignment) * alignment
    return GgufHeader(version, metadata, tuple(tensors), data_offset, cursor.size)
