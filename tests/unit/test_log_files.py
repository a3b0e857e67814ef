"""install_log_files: one record goes to exactly one of api_server.log, jobs.log, gpu_worker.log, rotating at
10 MiB; installing again replaces the handlers. tail(): the last lines, read back from the end of the file."""
from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path

import pytest

from ollama_server import log_files
from ollama_server.log_files import install_log_files
from ollama_server.log_files import installed_log_files
from ollama_server.log_files import tail


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, log_files._MARK, None)]


@pytest.fixture(autouse=True)
def clean_root():
    """Leave the root logger as the test found it: no file handlers of ours, the same level."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in ours():
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def flush() -> None:
    for handler in ours():
        handler.flush()


def read(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def messages(lines: list[str]) -> list[str]:
    """The message of each JSON line."""
    return [json.loads(line)["message"] for line in lines]


def test_each_record_goes_to_its_components_file_only(tmp_path):
    install_log_files(tmp_path, "INFO")
    logging.getLogger("ollama_server.jobs.worker").info("job eval_1 started")
    logging.getLogger("ollama_server.jobs").warning("queue looked at")
    logging.getLogger("ollama_server.engine.pool").info("loaded tiny")
    logging.getLogger("ollama_server.monitoring.gpu").info("no GPU monitoring")
    logging.getLogger("llama.cpp").warning("llama_context: n_ctx_seq < n_ctx_train")  # llama.cpp's own lines
    logging.getLogger("ollama_server.monitoring.collector").info("collected")
    logging.getLogger("ollama_server.api.auth").info("refused")
    logging.getLogger("werkzeug").info("GET /health 200")
    logging.getLogger("ollama_server.jobsboard").info("not a child of jobs")  # a prefix, not a child
    flush()
    jobs, gpu, api = (read(tmp_path / f"{c}.log") for c in ("jobs", "gpu_worker", "api_server"))
    assert messages(jobs) == ["job eval_1 started", "queue looked at"]
    assert messages(gpu) == ["loaded tiny", "no GPU monitoring", "llama_context: n_ctx_seq < n_ctx_train"]
    assert messages(api) == ["collected", "refused", "GET /health 200", "not a child of jobs"]
    first = json.loads(jobs[0])  # time, level and logger name on every line
    assert (first["level"], first["logger"]) == ("INFO", "ollama_server.jobs.worker") and first["timestamp"]


def test_records_below_the_level_are_not_written(tmp_path):
    install_log_files(tmp_path, "WARNING")
    logging.getLogger("ollama_server.jobs").info("chatter")
    logging.getLogger("ollama_server.jobs").error("broken")
    flush()
    assert messages(read(tmp_path / "jobs.log")) == ["broken"]


def test_installing_twice_adds_no_duplicate_handlers(tmp_path):
    install_log_files(tmp_path, "INFO")
    install_log_files(tmp_path, "INFO")
    assert sorted(getattr(h, log_files._MARK) for h in ours()) == ["api_server", "gpu_worker", "jobs"]
    logging.getLogger("ollama_server.jobs").info("once")
    flush()
    assert len(read(tmp_path / "jobs.log")) == 1


def test_installing_again_elsewhere_moves_the_files(tmp_path):
    install_log_files(tmp_path / "first", "INFO")
    install_log_files(tmp_path / "second", "INFO")
    assert installed_log_files()["jobs"] == tmp_path / "second" / "jobs.log"
    logging.getLogger("ollama_server.jobs").info("here")
    flush()
    assert read(tmp_path / "first" / "jobs.log") == [] and len(read(tmp_path / "second" / "jobs.log")) == 1


def test_the_files_rotate_at_10_mib_keeping_three_backups(tmp_path):
    install_log_files(tmp_path, "INFO")
    handler = next(h for h in ours() if getattr(h, log_files._MARK) == "api_server")
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert handler.maxBytes == 10 * 1024 * 1024 and handler.backupCount == 3
    line = "x" * (1024 * 1024)
    for _ in range(11):
        logging.getLogger("ollama_server.api").info(line)
    flush()
    assert (tmp_path / "api_server.log.1").exists()
    assert (tmp_path / "api_server.log.1").stat().st_size <= 10 * 1024 * 1024


def test_an_unknown_level_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="LOUD"):
        install_log_files(tmp_path, "LOUD")


# --- tail -------------------------------------------------------------------------------------------
def test_tail_returns_the_last_lines_in_order(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("".join(f"line {i}\n" for i in range(50)))
    assert tail(path, 3) == ["line 47", "line 48", "line 49"]
    assert tail(path, 500) == [f"line {i}" for i in range(50)]


def test_tail_keeps_a_last_line_without_its_newline(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("one\ntwo\nthree")
    assert tail(path, 2) == ["two", "three"]


def test_tail_of_a_missing_or_empty_file_is_empty(tmp_path):
    assert tail(tmp_path / "missing.log", 10) == []
    (tmp_path / "empty.log").write_text("")
    assert tail(tmp_path / "empty.log", 10) == []


def test_tail_keeps_lines_longer_than_a_block_whole(tmp_path):
    path = tmp_path / "a.log"
    long_line = "y" * (log_files.TAIL_BLOCK * 2 + 17)
    path.write_text(f"first\n{long_line}\nlast\n")
    assert tail(path, 2) == [long_line, "last"]
    assert tail(path, 3) == ["first", long_line, "last"]


def test_tail_reads_only_the_end_of_a_large_file(tmp_path, monkeypatch):
    path = tmp_path / "big.log"
    with path.open("w") as out:
        for i in range(200_000):
            out.write(f"{i:08d} some log text that fills the line\n")
    size = path.stat().st_size
    read_bytes = []
    real_open = open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def seek(self, *args):
            return self.handle.seek(*args)

        def read(self, n=-1):
            data = self.handle.read(n)
            read_bytes.append(len(data))
            return data

    monkeypatch.setattr(log_files, "open", lambda p, mode: Counting(real_open(p, mode)), raising=False)
    found = tail(path, 5)
    assert found == [f"{i:08d} some log text that fills the line" for i in range(199_995, 200_000)]
    assert sum(read_bytes) <= log_files.TAIL_BLOCK < size // 100


def test_tail_decodes_bad_utf8_instead_of_failing(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"ok\n\xff\xfe broken\n")
    assert tail(path, 1) == ["\ufffd\ufffd broken"]
