"""Hugging Face checkpoint conversion: the checks before a job is queued, and the converter child's plumbing."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from ollama_server.jobs import convert
from ollama_server.jobs.convert import ConversionCancelled
from ollama_server.jobs.convert import ConversionError

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0  # a failure guard only: every wait below ends on a condition

# A stand-in for llama.cpp's convert_hf_to_gguf.py, used ONLY to test the subprocess plumbing (arguments,
# environment, progress parsing, cancel, failure clean-up); the real converter needs torch, which the tests
# do not install. It prints what the real one prints: per-tensor log lines, then a tqdm "Writing" bar redrawn
# after "\r". It stops at each `gate` until the test writes a byte to the FIFO, so progress is observed at
# known points without sleeping.
STAND_IN = r'''
import json, os, sys
from pathlib import Path

here = Path(__file__).parent
plan = json.loads((here / "plan.json").read_text())
model, outfile, outtype = sys.argv[1], Path(sys.argv[3]), sys.argv[5]
(here / "seen.json").write_text(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(),
    "pythonpath": os.environ.get("PYTHONPATH"), "no_local_gguf": os.environ.get("NO_LOCAL_GGUF")}))

def gate():
    # Until a byte comes: reopened right after the last gate, the FIFO may still have that gate's writer, whose
    # close then reads as an empty end-of-file, not as this gate's release.
    while True:
        with open(here / "gate", "rb") as fifo:
            if fifo.read(1):
                return

for name in ("token_embd.weight", "blk.0.attn_q.weight", "output_norm.weight"):
    print(f"INFO:hf-to-gguf:{name + ',':<22} torch.bfloat16 --> {outtype.upper()}, shape = {{64, 100}}",
          file=sys.stderr, flush=True)
outfile.write_bytes(b"GGUF-half")  # the real converter writes its header before the tensors
if plan.get("gate_after_tensors"):
    gate()
sys.stderr.write("\rWriting:   0%|          | 0.00/1.00k [00:00<?, ?byte/s]")
sys.stderr.write("\rWriting:  50%|#####     | 500/1.00k [00:01<00:01, 500byte/s]")
sys.stderr.flush()
if plan.get("gate_at_half"):
    gate()
if plan.get("fail"):
    print("Traceback (most recent call last):\nRuntimeError: " + plan["fail"], file=sys.stderr)
    sys.exit(3)
sys.stderr.write("\rWriting: 100%|##########| 1.00k/1.00k [00:02<00:00, 500byte/s]\n")
if not plan.get("write_nothing"):
    outfile.write_bytes(b"GGUF-complete")
else:
    outfile.unlink()
print("INFO:hf-to-gguf:Model successfully exported to " + str(outfile), file=sys.stderr)
'''


def safetensors_bytes(names: list[str]) -> bytes:
    """A real safetensors header (8-byte length, JSON) over a few bytes of data."""
    header = {name: {"dtype": "BF16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, name in enumerate(names)}
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * (2 * len(names))


def checkpoint(tmp_path: Path, name: str = "qwen3-step-5000", **leave_out: bool) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    if not leave_out.get("config"):
        (directory / "config.json").write_text(json.dumps({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}))
    if not leave_out.get("weights"):
        (directory / "model.safetensors").write_bytes(safetensors_bytes(["a", "b", "c"]))
    if not leave_out.get("tokenizer"):
        (directory / "tokenizer.json").write_text("{}")
    return directory


@pytest.fixture
def stand_in(tmp_path) -> Path:
    tree = tmp_path / "llama.cpp"
    (tree / "gguf-py").mkdir(parents=True)
    (tree / "convert_hf_to_gguf.py").write_text(STAND_IN)
    os.mkfifo(tree / "gate")
    return tree


def plan(tree: Path, **steps) -> None:
    (tree / "plan.json").write_text(json.dumps(steps))


def release(tree: Path) -> None:
    """Let the stand-in past its gate (on a thread: opening a FIFO blocks until the other end opens it)."""
    def write() -> None:
        with open(tree / "gate", "wb") as fifo:
            fifo.write(b"x")
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(DEADLINE_S)
    assert not writer.is_alive(), "the stand-in never reached its gate"


class Run:
    """convert() on a thread, its progress values, and waits on them."""

    def __init__(self, tree: Path, source: Path, out: Path, outtype: str = "f16"):
        self.values: list[float] = []
        self.changed = threading.Condition()
        self.cancel = threading.Event()
        self.result: object = None
        self.thread = threading.Thread(target=self._run, args=(tree, source, out, outtype))
        self.thread.start()

    def _run(self, tree, source, out, outtype):
        try:
            self.result = convert.convert(source, out, outtype, str(tree), self._progress, self.cancel.is_set)
        except BaseException as exc:  # handed to the test
            self.result = exc

    def _progress(self, value: float) -> None:
        with self.changed:
            self.values.append(value)
            self.changed.notify_all()

    def wait_for(self, predicate) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.values), timeout=DEADLINE_S), self.values

    def finish(self):
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        return self.result


# --- the checkpoint ------------------------------------------------------------------------------
def test_a_complete_checkpoint_passes(tmp_path):
    convert.check_checkpoint(checkpoint(tmp_path))


def test_pytorch_bin_weights_and_a_sentencepiece_tokenizer_count_too(tmp_path):
    directory = checkpoint(tmp_path, weights=True, tokenizer=True)
    (directory / "pytorch_model-00001-of-00001.bin").write_bytes(b"\0")
    (directory / "tokenizer.model").write_bytes(b"\0")
    convert.check_checkpoint(directory)


@pytest.mark.parametrize("missing, message", [
    ("config", "config.json is missing"),
    ("weights", "no weights (*.safetensors or pytorch_model*.bin)"),
    ("tokenizer", "no tokenizer (tokenizer.json or tokenizer.model)")])
def test_it_answers_400_naming_what_the_checkpoint_lacks(tmp_path, missing, message):
    with pytest.raises(ConversionError) as caught:
        convert.check_checkpoint(checkpoint(tmp_path, **{missing: True}))
    assert caught.value.status == 400 and message in caught.value.message
    assert "qwen3-step-5000 is not a usable Hugging Face checkpoint" in caught.value.message


def test_it_names_every_problem_at_once(tmp_path):
    with pytest.raises(ConversionError) as caught:
        convert.check_checkpoint(checkpoint(tmp_path, config=True, weights=True, tokenizer=True))
    assert caught.value.message.count(";") == 2


def test_a_config_without_model_type_or_architectures_is_refused(tmp_path):
    directory = checkpoint(tmp_path)
    (directory / "config.json").write_text('{"hidden_size": 64}')
    with pytest.raises(ConversionError, match="names neither model_type nor architectures"):
        convert.check_checkpoint(directory)
    (directory / "config.json").write_text("{oops")
    with pytest.raises(ConversionError, match="config.json is not valid JSON"):
        convert.check_checkpoint(directory)


def test_a_sharded_checkpoint_missing_a_shard_is_refused_naming_it(tmp_path):
    directory = checkpoint(tmp_path)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ConversionError, match="names missing shards: model-00002-of-00002.safetensors"):
        convert.check_checkpoint(directory)


def test_a_path_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="is not a directory") as caught:
        convert.check_checkpoint(tmp_path / "nowhere")
    assert caught.value.status == 400


# --- the converter and its dependencies --------------------------------------------------------------
def test_the_default_converter_is_the_pinned_sdists_llama_cpp_in_the_cache(tmp_path, monkeypatch):
    pin = re.search(r"^llama-cpp-python==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    monkeypatch.setenv("LLAMA_SERVER_CACHE", str(tmp_path))
    assert convert.default_converter_dir() == tmp_path / f"llama_cpp_python-{pin}" / "vendor" / "llama.cpp"
    with pytest.raises(ConversionError) as caught:
        convert.find_converter("")
    assert caught.value.status == 400 and "`make converter`" in caught.value.message
    tree = convert.default_converter_dir()
    tree.mkdir(parents=True)
    (tree / "convert_hf_to_gguf.py").write_text("")
    assert convert.find_converter("") == tree


def test_a_configured_converter_dir_without_the_script_is_a_400_naming_it(tmp_path, stand_in):
    assert convert.find_converter(str(stand_in)) == stand_in
    with pytest.raises(ConversionError, match=f"converter_dir {tmp_path} holds no convert_hf_to_gguf.py"):
        convert.find_converter(str(tmp_path))


def pretend_installed(monkeypatch, *absent: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in absent:
            return None
        if name in convert.DEPENDENCIES:  # present, whatever this machine has; nothing is imported
            return importlib.util.spec_from_loader(name, loader=None)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_it_lists_the_converters_missing_packages_without_importing_them(monkeypatch):
    pretend_installed(monkeypatch, "torch", "transformers")
    assert convert.missing_dependencies() == ["torch", "transformers"]
    assert "torch" not in sys.modules


def test_check_ready_says_which_packages_to_install_and_how(tmp_path, stand_in, monkeypatch):
    pretend_installed(monkeypatch, "torch", "transformers")
    with pytest.raises(ConversionError) as caught:
        convert.check_ready(checkpoint(tmp_path), "f16", str(stand_in))
    requirements = stand_in / "requirements" / "requirements-convert_hf_to_gguf.txt"
    assert caught.value.status == 400
    assert caught.value.message == (
        f"converting a Hugging Face checkpoint needs: torch, transformers — install them with "
        f"`{sys.executable} -m pip install -r {requirements}`")


def test_check_ready_returns_the_converter_when_everything_is_there(tmp_path, stand_in, monkeypatch):
    pretend_installed(monkeypatch)
    assert convert.check_ready(checkpoint(tmp_path), "q8_0", str(stand_in)) == stand_in


def test_check_ready_refuses_an_outtype_other_than_f16_or_q8_0(tmp_path, stand_in):
    with pytest.raises(ConversionError, match="outtype must be one of f16, q8_0, not 'q4_k_m'") as caught:
        convert.check_ready(checkpoint(tmp_path), "q4_k_m", str(stand_in))
    assert caught.value.status == 400


def test_this_machine_has_no_torch_so_the_real_check_names_it(tmp_path, stand_in):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here")
    with pytest.raises(ConversionError, match="needs: torch"):
        convert.check_ready(checkpoint(tmp_path), "f16", str(stand_in))


# --- running the converter (the stand-in) -------------------------------------------------------------
def test_it_runs_the_converter_with_its_gguf_py_and_follows_its_progress_to_the_end(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("NO_LOCAL_GGUF", "1")
    plan(stand_in, gate_after_tensors=True, gate_at_half=True)
    source, out = checkpoint(tmp_path), tmp_path / "models" / "qwen3-step-5000.gguf"
    run = Run(stand_in, source, out, "q8_0")
    run.wait_for(lambda v: v and v[-1] >= 0.1)  # three tensor lines of the three tensors the header holds
    assert run.values[-1] == pytest.approx(0.1)
    release(stand_in)
    run.wait_for(lambda v: v[-1] >= 0.55)  # "Writing:  50%|" is 0.1 + 0.9 * 0.5
    assert run.values[-1] == pytest.approx(0.55) and not out.exists()
    release(stand_in)
    assert run.finish() == out
    assert out.read_bytes() == b"GGUF-complete"
    assert run.values == sorted(run.values) and run.values[-1] == 1.0
    seen = json.loads((stand_in / "seen.json").read_text())
    partial = Path(seen["argv"][2])
    assert seen["argv"][0] == str(source) and seen["argv"][1] == "--outfile"
    assert seen["argv"][3:] == ["--outtype", "q8_0"]
    assert partial.parent == out.parent and partial != out and not partial.exists()
    assert seen["no_local_gguf"] is None
    assert seen["pythonpath"].split(os.pathsep)[0] == str(stand_in / "gguf-py")
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_cancelling_kills_the_converter_and_leaves_no_file(tmp_path, stand_in):
    plan(stand_in, gate_after_tensors=True)  # never released: only the cancel can end it
    out = tmp_path / "models" / "m.gguf"
    run = Run(stand_in, checkpoint(tmp_path), out)
    run.wait_for(lambda v: v and v[-1] >= 0.1)
    pid = json.loads((stand_in / "seen.json").read_text())["pid"]
    run.cancel.set()
    result = run.finish()
    assert isinstance(result, ConversionCancelled) and result.status == 409
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert list(out.parent.iterdir()) == []  # the half-written partial went too


def test_a_failing_converter_is_a_500_quoting_its_last_lines_and_leaves_no_file(tmp_path, stand_in):
    plan(stand_in, fail="shape mismatch in blk.0.attn_q.weight")
    out = tmp_path / "models" / "m.gguf"
    run = Run(stand_in, checkpoint(tmp_path), out)
    result = run.finish()
    assert isinstance(result, ConversionError) and result.status == 500
    assert "exit status 3" in result.message
    assert "RuntimeError: shape mismatch in blk.0.attn_q.weight" in result.message
    assert "Writing:" not in result.message  # the bar's redraws are not quoted
    assert list(out.parent.iterdir()) == []


def test_a_converter_that_exits_0_without_a_file_is_a_500(tmp_path, stand_in):
    plan(stand_in, write_nothing=True)
    out = tmp_path / "models" / "m.gguf"
    result = Run(stand_in, checkpoint(tmp_path), out).finish()
    assert isinstance(result, ConversionError) and result.status == 500 and "wrote no file" in result.message
    assert not out.exists()


def test_convert_checks_the_checkpoint_before_starting_anything(tmp_path, stand_in):
    plan(stand_in)
    with pytest.raises(ConversionError, match="no tokenizer"):
        convert.convert(checkpoint(tmp_path, tokenizer=True), tmp_path / "m.gguf", "f16", str(stand_in),
                        lambda value: None, lambda: False)
    assert not (stand_in / "seen.json").exists()
