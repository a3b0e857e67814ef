"""llama.cpp's log pieces become one record per line at the vendored ggml's levels, through the "llama.cpp"
logger: nothing raw on stderr, INFO chatter hidden at the service's INFO, warnings and errors kept."""
from __future__ import annotations

import logging

import pytest

from ollama_server import log_format
from ollama_server.engine.backend import LoadOptions
from ollama_server.engine.llama_log import GGML_CONT
from ollama_server.engine.llama_log import LineAssembler
from tests.log_capture import Captured

DEBUG, INFO, WARN, ERROR = 1, 2, 3, 4  # ggml_log_level


def test_pieces_are_joined_into_lines_at_the_level_of_their_first_piece():
    lines = LineAssembler()
    assert lines.feed(INFO, "llama_model_load: loading") == []
    assert lines.feed(GGML_CONT, " ...") == []
    assert lines.feed(GGML_CONT, ". done\n") == [(logging.INFO, "llama_model_load: loading .... done")]
    assert lines.feed(ERROR, "first\nsecond\n\n") == [(logging.ERROR, "first"), (logging.ERROR, "second")]
    assert lines.feed(WARN, "w\n") == [(logging.WARNING, "w")]
    assert lines.feed(GGML_CONT, "after a whole line, CONT keeps its level\n") == [
        (logging.WARNING, "after a whole line, CONT keeps its level")]
    assert lines.feed(DEBUG, "d\n") == [(logging.DEBUG, "d")]


@pytest.fixture
def llama_records():
    """A handler on the "llama.cpp" logger; afterwards its level, the scheduler's and the root's as they were."""
    logger, root, scheduler = logging.getLogger("llama.cpp"), logging.getLogger(), logging.getLogger("apscheduler")
    handler, levels = Captured(), (logger.level, root.level, scheduler.level)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    for each, level in zip((logger, root, scheduler), levels):
        each.setLevel(level)


def load_tiny(path) -> None:
    from ollama_server.engine.llama_backend import LlamaBackend
    backend = LlamaBackend()
    try:
        backend.load(str(path), LoadOptions(n_ctx=128, n_slots=1, n_gpu_layers=0)).close()
    finally:
        backend.close()


def test_a_real_load_logs_through_the_logger_and_writes_nothing_raw(tiny_gemma, llama_records, capfd):
    logging.getLogger("llama.cpp").setLevel(logging.DEBUG)
    load_tiny(tiny_gemma)
    levels = {r.levelno for r in llama_records.records}
    assert any(r.getMessage().startswith("llama_context:") for r in llama_records.records)
    assert {logging.DEBUG, logging.INFO} <= levels
    assert "llama_context" not in capfd.readouterr().err


def test_at_the_services_info_level_a_load_leaves_no_llama_cpp_line(tiny_gemma, llama_records, capfd):
    log_format.apply_log_level("INFO")
    load_tiny(tiny_gemma)
    assert [r for r in llama_records.records if r.levelno < logging.WARNING] == []
    assert "llama_context" not in capfd.readouterr().err
