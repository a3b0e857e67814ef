"""GGUF inspection from the header and tensor table: facts, capabilities, layer sizes, errors, the cache."""
from __future__ import annotations

import os
import threading
import time

import pytest
from gguf.constants import GGML_QUANT_SIZES

from ollama_server.models import gguf
from ollama_server.models import inspect
from ollama_server.models.ggml_types import GGML_TYPES
from ollama_server.models.ggml_types import tensor_bytes
from ollama_server.models.ollama_store import scan_store
from tests.fakes import ollama_layout
from tests.fakes.tiny_gguf import write_header_model


def test_it_reads_the_bundled_gemma_without_loading_weights(bundled_gguf):
    info = inspect.read_info(str(bundled_gguf))
    assert info.error == ""
    assert (info.architecture, info.size_label, info.file_type) == ("gemma3", "270M", "Q4_K_M")
    assert info.parameter_count == 268_098_176  # the sum of every tensor's element count
    assert info.tensor_types == {"F32": 109, "Q4_K": 27, "Q5_0": 81, "Q6_K": 9, "Q8_0": 10}
    assert (info.context_length, info.embedding_length, info.block_count) == (32768, 640, 18)
    assert (info.head_count, info.head_count_kv) == (4, 1)
    assert info.chat_template is None and info.capabilities == ("completion",)


def test_layer_sizes_account_for_every_byte_of_tensor_data(bundled_gguf):
    info = inspect.read_info(str(bundled_gguf))
    header = gguf.read_header(str(bundled_gguf))
    assert len(info.layer_bytes) == 18 and all(size > 0 for size in info.layer_bytes)
    assert set(info.non_layer_bytes) == {"token_embd.weight", "output_norm.weight"}
    # The last tensor ends exactly at the end of the file: nothing unaccounted for.
    assert header.data_offset + info.weight_bytes == header.file_size


def test_each_tensor_fits_before_the_next_one_in_the_real_file(bundled_gguf):
    header = gguf.read_header(str(bundled_gguf))
    ordered = sorted(header.tensors, key=lambda t: t.offset)
    for tensor, following in zip(ordered, ordered[1:]):
        gap = following.offset - (tensor.offset + tensor_bytes(tensor.shape, tensor.ggml_type))
        assert 0 <= gap < 32, tensor.name  # at most the alignment padding


def test_block_sizes_agree_with_the_gguf_package():
    for type_id, (elements, size) in GGML_QUANT_SIZES.items():
        if int(type_id) in GGML_TYPES:
            known = GGML_TYPES[int(type_id)]
            assert (known.block_elements, known.block_bytes) == (elements, size), known.name


def test_without_a_size_label_the_parameter_count_is_formatted(tmp_path):
    info = inspect.read_info(str(write_header_model(tmp_path / "m.gguf", blocks=200, width=256)))
    assert info.parameter_count == 4096 + 200 * (256 * 256 + 256) + 256
    assert info.size_label == "13.16M" and info.file_type == ""


@pytest.mark.parametrize("arch,metadata,expected", [
    ("llama", {}, ("completion",)),
    ("qwen3", {"tokenizer.chat_template": "{% if enable_thinking %}x{% endif %}"}, ("completion", "thinking")),
    ("qwen3", {"tokenizer.chat_template": "<think>{{ m }}</think>"}, ("completion", "thinking")),
    ("llama", {"tokenizer.chat_template": "{% for tool in tools %}{% endfor %}"}, ("completion", "tools")),
    ("gemma3", {"gemma3.pooling_type": 1}, ("completion", "embedding")),
    ("bert", {}, ("embedding",)),
])
def test_capabilities_come_from_architecture_pooling_and_template(tmp_path, arch, metadata, expected):
    path = write_header_model(tmp_path / "m.gguf", arch=arch, metadata=metadata)
    assert inspect.read_info(str(path)).capabilities == expected


def test_a_size_label_in_the_header_wins(tmp_path):
    path = write_header_model(tmp_path / "m.gguf", metadata={"general.size_label": "7B", "general.file_type": 15})
    info = inspect.read_info(str(path))
    assert (info.size_label, info.file_type) == ("7B", "Q4_K_M")


@pytest.mark.parametrize("content,words", [
    (b"", "too small"),
    (b"x" * 10, "too small"),
    (b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20, "larger than the file"),
    (b"NOPE" + b"\x00" * 40, "bad magic"),
])
def test_a_corrupt_file_gives_an_error_not_an_exception(tmp_path, content, words):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    info = inspect.read_info(str(path))
    assert words in info.error and info.architecture == "" and info.capabilities == ()


def test_a_file_cut_inside_the_header_is_reported_truncated(tmp_path):
    path = write_header_model(tmp_path / "m.gguf", metadata={"tokenizer.ggml.tokens": ["a"] * 500})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])
    assert "truncated" in inspect.read_info(str(path)).error


def test_a_file_cut_inside_the_weights_keeps_its_facts_and_names_the_tensor(tmp_path):
    path = write_header_model(tmp_path / "m.gguf", blocks=2, width=64, context_length=512)
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    info = inspect.read_info(str(path))
    assert info.error.startswith("file is truncated: tensor ") and "ends at byte" in info.error
    assert info.architecture == "llama" and info.context_length == 512


def test_a_missing_file_is_an_error(tmp_path):
    info = inspect.Inspector().inspect(str(tmp_path / "gone.gguf"))
    assert "cannot read" in info.error


def test_results_are_cached_until_size_or_mtime_change(tmp_path):
    inspector = inspect.Inspector()
    path = write_header_model(tmp_path / "m.gguf", context_length=1000)
    first = inspector.inspect(str(path))
    assert inspector.inspect(str(path)) is first
    write_header_model(path, context_length=2000)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = inspector.inspect(str(path))
    assert second is not first and second.context_length == 2000


def test_concurrent_inspection_is_consistent(tmp_path):
    inspector = inspect.Inspector()
    paths = [write_header_model(tmp_path / f"m{i}.gguf", context_length=100 + i) for i in range(8)]
    results, errors = [], []

    def work():
        try:
            results.append([inspector.inspect(str(p)).context_length for p in paths])
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and all(r == [100 + i for i in range(8)] for r in results)


def test_summary_is_json_ready_and_carries_the_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"x" * 30)
    assert "error" in inspect.read_info(str(bad)).summary()
    good = inspect.read_info(str(write_header_model(tmp_path / "m.gguf"))).summary()
    assert "error" not in good and good["block_count"] == 2 and good["weight_bytes"] > 0


@pytest.fixture(scope="module")
def sixty_store(tmp_path_factory):
    """An Ollama store of 60 generated GGUFs (tiny tensors, a 2,000-token vocabulary, varied architectures)."""
    root = tmp_path_factory.mktemp("sixty")
    archs = ["llama", "qwen3", "gemma3", "mistral", "phi3", "bert"]
    (root / "src").mkdir()
    for i in range(60):
        gguf_file = write_header_model(root / "src" / f"m{i}.gguf", arch=archs[i % 6],
                                       metadata={"general.file_type": 15, "general.name": f"model {i}",
                                                 "tokenizer.ggml.tokens": [f"t{n}" for n in range(2000)],
                                                 "tokenizer.chat_template": "{{ tools }}" if i % 2 else "x"},
                                       blocks=4, context_length=2048 * (1 + i % 4))
        ollama_layout.add_model(root / "store", ollama_layout.library(f"model{i}"), gguf_file)
    return root / "store"


def test_sixty_headers_inspect_quickly_cold_and_cached(sixty_store):
    """Inspection of a generated Ollama store of 60 GGUF headers; prints its time (see pytest -s)."""
    inspector = inspect.Inspector()
    started = time.perf_counter()
    specs = scan_store(sixty_store)
    cold = [inspector.inspect(spec.path) for spec in specs]
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    specs = scan_store(sixty_store)
    cached = [inspector.inspect(spec.path) for spec in specs]
    cached_s = time.perf_counter() - started
    started = time.perf_counter()
    lookups = [inspector.inspect(spec.path) for spec in specs]
    lookup_s = time.perf_counter() - started
    print(f"\n60 GGUF headers: cold {cold_s * 1000:.1f} ms (scan + inspect), cached {cached_s * 1000:.1f} ms "
          f"(scan + cached inspect), cached inspect alone {lookup_s * 1000:.2f} ms")
    assert len(cold) == 60 and all(info.error == "" for info in cold)
    assert all(a is b for a, b in zip(cached, lookups))
    assert {info.context_length for info in cold} == {2048, 4096, 6144, 8192}


def test_tags_over_sixty_store_models_answers_from_the_cache(sixty_store, make_app):
    """/api/tags over the same store through the app; prints first and repeated listing times."""
    client = make_app(manifests_dir=str(sixty_store)).test_client()
    started = time.perf_counter()
    first = client.get("/api/tags")
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = client.get("/api/tags")
    again_s = time.perf_counter() - started
    print(f"\n/api/tags over 62 models: first {first_s * 1000:.1f} ms, repeated {again_s * 1000:.1f} ms")
    assert first.status_code == again.status_code == 200
    assert len(again.get_json()["models"]) == 62  # the 60 plus the fixture's two placeholder files
