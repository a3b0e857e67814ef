"""ggml tensor types (name, elements per block, bytes per block) and llama.cpp file-type names."""
from __future__ import annotations

import math
from typing import NamedTuple
from typing import Optional


class GgmlType(NamedTuple):
    """How one ggml type stores its elements: `block_bytes` bytes hold `block_elements` values."""

    name: str
    block_elements: int
    block_bytes: int


# ggml's `ggml_type` enum: ids 4, 5 (old Q4_2/Q4_3) and 31–33 (removed Q4_0 repacks) are gone.
GGML_TYPES: dict[int, GgmlType] = {
    0: GgmlType("F32", 1, 4), 1: GgmlType("F16", 1, 2), 2: GgmlType("Q4_0", 32, 18),
    3: GgmlType("Q4_1", 32, 20), 6: GgmlType("Q5_0", 32, 22), 7: GgmlType("Q5_1", 32, 24),
    8: GgmlType("Q8_0", 32, 34), 9: GgmlType("Q8_1", 32, 40), 10: GgmlType("Q2_K", 256, 84),
    11: GgmlType("Q3_K", 256, 110), 12: GgmlType("Q4_K", 256, 144), 13: GgmlType("Q5_K", 256, 176),
    14: GgmlType("Q6_K", 256, 210), 15: GgmlType("Q8_K", 256, 292), 16: GgmlType("IQ2_XXS", 256, 66),
    17: GgmlType("IQ2_XS", 256, 74), 18: GgmlType("IQ3_XXS", 256, 98), 19: GgmlType("IQ1_S", 256, 50),
    20: GgmlType("IQ4_NL", 32, 18), 21: GgmlType("IQ3_S", 256, 110), 22: GgmlType("IQ2_S", 256, 82),
    23: GgmlType("IQ4_XS", 256, 136), 24: GgmlType("I8", 1, 1), 25: GgmlType("I16", 1, 2),
    26: GgmlType("I32", 1, 4), 27: GgmlType("I64", 1, 8), 28: GgmlType("F64", 1, 8),
    29: GgmlType("IQ1_M", 256, 56), 30: GgmlType("BF16", 1, 2), 34: GgmlType("TQ1_0", 256, 54),
    35: GgmlType("TQ2_0", 256, 66), 39: GgmlType("MXFP4", 32, 17),
}

# llama.cpp's `llama_ftype` enum (general.file_type) -> the name Ollama shows as quantization_level.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}


def type_name(ggml_type: int) -> str:
    """`Q4_K` for 12; unknown ids are named `TYPE_<id>` rather than refused (newer llama.cpp may know them)."""
    known = GGML_TYPES.get(ggml_type)
    return known.name if known else f"TYPE_{ggml_type}"


def tensor_bytes(shape: tuple[int, ...], ggml_type: int) -> Optional[int]:
    """Bytes a tensor's data occupies, or None for an unknown type or a row that is not whole blocks."""
    known = GGML_TYPES.get(ggml_type)
    if known is None:
        return None
    row = shape[0] if shape else 1
    if row % known.block_elements:
        return None
    rows = math.prod(shape[1:]) if len(shape) > 1 else 1
    return row // known.block_elements * known.block_bytes * rows
