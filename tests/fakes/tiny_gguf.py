"""GGUF files the tests write themselves with the `gguf` package: a tiny real Gemma 3 and header-only files."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import Optional

import gguf as gguf_writer
import numpy as np

from ollama_server.models import gguf as gguf_reader

VT = gguf_writer.GGUFValueType
TINY = {"embedding": 64, "heads": 2, "kv_heads": 1, "head_dim": 32, "ffn": 128, "blocks": 2}


def tokenizer_of(path: str | Path) -> dict[str, Any]:
    """Every tokenizer.* key/value of a GGUF file (the vocabulary included)."""
    metadata = gguf_reader.read_header(str(path), keep_arrays=True).metadata
    return {key: value for key, value in metadata.items() if key.startswith("tokenizer.")}


def _value_type(value: Any) -> tuple[Any, Optional[Any]]:
    """The GGUF type to write a Python value as (token ids as uint32, scores as float32, like llama.cpp)."""
    if isinstance(value, bool):
        return VT.BOOL, None
    if isinstance(value, int):
        return VT.UINT32, None
    if isinstance(value, float):
        return VT.FLOAT32, None
    if isinstance(value, str):
        return VT.STRING, None
    first = value[0] if value else ""
    item = VT.STRING if isinstance(first, str) else VT.FLOAT32 if isinstance(first, float) else VT.INT32
    return VT.ARRAY, item


def add_metadata(writer: gguf_writer.GGUFWriter, metadata: dict[str, Any]) -> None:
    """Write key/values, picking each GGUF type from the Python value."""
    for key, value in metadata.items():
        vtype, sub = _value_type(value)
        writer.add_key_value(key, value, vtype, sub)


def _gemma_tensors(rng: np.random.Generator, vocab: int, dims: dict) -> dict[str, np.ndarray]:
    """Random Gemma 3 weights; numpy shapes are the GGUF shapes reversed."""
    e, hd, ff = dims["embedding"], dims["head_dim"], dims["ffn"]
    q, kv = dims["heads"] * hd, dims["kv_heads"] * hd

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)

    tensors = {"token_embd.weight": matrix(vocab, e).astype(np.float16),
               "output_norm.weight": np.ones(e, dtype=np.float32)}
    for i in range(dims["blocks"]):
        block = {"attn_norm": np.ones(e, np.float32), "attn_q": matrix(q, e), "attn_k": matrix(kv, e),
                 "attn_v": matrix(kv, e), "attn_output": matrix(e, q), "attn_q_norm": np.ones(hd, np.float32),
                 "attn_k_norm": np.ones(hd, np.float32), "post_attention_norm": np.ones(e, np.float32),
                 "ffn_norm": np.ones(e, np.float32), "ffn_gate": matrix(ff, e), "ffn_up": matrix(ff, e),
                 "ffn_down": matrix(e, ff), "post_ffw_norm": np.ones(e, np.float32)}
        tensors.update({f"blk.{i}.{name}.weight": value for name, value in block.items()})
    return tensors


def write_tiny_gemma(path: str | Path, tokenizer: dict[str, Any], context_length: int = 512,
                     seed: int = 0, dims: dict = TINY, chat_template: Optional[str] = None) -> Path:
    """A Gemma 3 with random weights and tiny dimensions that llama.cpp really loads and runs."""
    vocab = tokenizer["tokenizer.ggml.tokens"]
    writer = gguf_writer.GGUFWriter(str(path), "gemma3")
    writer.add_name("tiny-gemma3")
    writer.add_file_type(1)  # mostly F16
    writer.add_context_length(context_length)
    writer.add_embedding_length(dims["embedding"])
    writer.add_block_count(dims["blocks"])
    writer.add_feed_forward_length(dims["ffn"])
    writer.add_head_count(dims["heads"])
    writer.add_head_count_kv(dims["kv_heads"])
    writer.add_key_length(dims["head_dim"])
    writer.add_value_length(dims["head_dim"])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_sliding_window(512)
    add_metadata(writer, tokenizer)
    if chat_template:
        writer.add_chat_template(chat_template)
    for name, array in _gemma_tensors(np.random.default_rng(seed), len(vocab), dims).items():
        writer.add_tensor(name, array)
    _finish(writer)
    return Path(path)


def write_header_model(path: str | Path, arch: str = "llama", metadata: Optional[dict] = None,
                       blocks: int = 2, width: int = 32, context_length: int = 4096) -> Path:
    """A small, structurally valid GGUF (tiny F32/F16 tensors, a few metadata keys) for inspection tests."""
    writer = gguf_writer.GGUFWriter(str(path), arch)
    writer.add_context_length(context_length)
    writer.add_embedding_length(width)
    writer.add_block_count(blocks)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    add_metadata(writer, metadata or {})
    writer.add_tensor("token_embd.weight", np.zeros((16, width), np.float16))
    for i in range(blocks):
        writer.add_tensor(f"blk.{i}.attn_q.weight", np.zeros((width, width), np.float32))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.zeros(width, np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(width, np.float32))
    _finish(writer)
    return Path(path)


def _finish(writer: gguf_writer.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
