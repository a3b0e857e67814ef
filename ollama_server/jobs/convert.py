"""Hugging Face checkpoint -> GGUF through llama.cpp's convert_hf_to_gguf.py, run as a child process."""
from __future__ import annotations

import codecs
import collections
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Callable
from typing import Optional

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
OUTTYPES = ("f16", "q8_0")
# What convert_hf_to_gguf.py imports (its requirements file); torch is never imported here, only looked for.
DEPENDENCIES = ("torch", "transformers", "numpy", "sentencepiece", "safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
TENSOR_SHARE = 0.1  # of the progress bar, for the per-tensor lines before "Writing" (the writing is the slow part)
TAIL_LINES = 20
KILL_GRACE_S = 5.0
POLL_S = 0.1  # how often a running conversion looks at its cancel flag

_TENSOR_LINE = re.compile(r"\S+,\s+\S+ --> \S+, shape = \{")
_WRITING = re.compile(r"Writing:\s*(\d{1,3})%\|")


class ConversionError(Exception):
    """A conversion cannot start or failed: the HTTP status it means and a message naming the cause."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ConversionCancelled(ConversionError):
    """The conversion was cancelled; the child was killed and nothing was written."""

    def __init__(self, message: str = "conversion cancelled"):
        super().__init__(409, message)


def default_converter_dir() -> Path:
    """Where `make converter` puts llama.cpp: the pinned llama-cpp-python sdist's vendor/llama.cpp."""
    cache = Path(os.environ.get("LLAMA_SERVER_CACHE") or Path.home() / ".cache/ollama_server/llama-server")
    return cache / f"llama_cpp_python-{_pinned_version()}" / "vendor" / "llama.cpp"


def _pinned_version() -> str:
    """llama-cpp-python's pin in requirements.txt, else the installed version (a deployment without the repo)."""
    try:
        for line in (ROOT / "requirements.txt").read_text().splitlines():
            match = re.match(r"llama-cpp-python==([^\s#;]+)", line.strip())
            if match:
                return match.group(1)
    except OSError:
        pass
    from importlib import metadata
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "unknown"


def find_converter(converter_dir: str) -> Path:
    """The llama.cpp tree holding convert_hf_to_gguf.py (converter_dir, or the default); 400 when absent."""
    where = Path(converter_dir).expanduser() if converter_dir else default_converter_dir()
    if (where / CONVERTER_SCRIPT).is_file():
        return where
    if converter_dir:
        raise ConversionError(400, f"converter_dir {where} holds no {CONVERTER_SCRIPT}: point it at a llama.cpp "
                                   f"checkout, or leave it empty and run `make converter`")
    raise ConversionError(400, f"the llama.cpp converter is not installed ({where / CONVERTER_SCRIPT} is "
                               f"missing): run `make converter` to fetch it")


def check_checkpoint(directory: Path) -> None:
    """A Hugging Face checkpoint: config.json with model_type/architectures, weights, a tokenizer; else 400."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConversionError(400, f"{directory} is not a directory")
    problems = []
    config = directory / "config.json"
    if not config.is_file():
        problems.append("config.json is missing")
    else:
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError) as exc:
            data = None
            problems.append(f"config.json is not valid JSON ({exc})")
        if data is not None and not (isinstance(data, dict) and (data.get("model_type") or data.get("architectures"))):
            problems.append("config.json names neither model_type nor architectures")
    weights = list(directory.glob("*.safetensors")) + list(directory.glob("pytorch_model*.bin"))
    if not weights:
        problems.append("no weights (*.safetensors or pytorch_model*.bin)")
    problems.extend(_missing_shards(directory))
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        problems.append("no tokenizer (tokenizer.json or tokenizer.model)")
    if problems:
        raise ConversionError(400, f"{directory} is not a usable Hugging Face checkpoint: " + "; ".join(problems))


def _missing_shards(directory: Path) -> list[str]:
    """Shards a *.index.json names that are not there (a copy that stopped half-way)."""
    problems = []
    for index in list(directory.glob("*.safetensors.index.json")) + list(directory.glob("pytorch_model*.index.json")):
        try:
            files = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError) as exc:
            problems.append(f"{index.name} is not valid JSON ({exc})")
            continue
        missing = sorted(name for name in files if not (directory / name).is_file())
        if missing:
            problems.append(f"{index.name} names missing shards: {', '.join(missing)}")
    return problems


def missing_dependencies() -> list[str]:
    """The converter's Python packages that this interpreter (sys.executable, the child's) cannot import."""
    missing = []
    for name in DEPENDENCIES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            missing.append(name)
    return missing


def check_ready(directory: Path, outtype: str, converter_dir: str) -> Path:
    """Everything a conversion needs, checked before it is queued; the converter's directory, else 400."""
    _check_outtype(outtype)
    check_checkpoint(directory)
    converter = find_converter(converter_dir)
    missing = missing_dependencies()
    if missing:
        requirements = converter / "requirements" / "requirements-convert_hf_to_gguf.txt"
        raise ConversionError(400, f"converting a Hugging Face checkpoint needs: {', '.join(missing)} — install "
                                   f"them with `{sys.executable} -m pip install -r {requirements}`")
    return converter


def _check_outtype(outtype: str) -> None:
    if outtype not in OUTTYPES:
        raise ConversionError(400, f"outtype must be one of {', '.join(OUTTYPES)}, not {outtype!r}")


def convert(directory: Path, out_path: Path, outtype: str, converter_dir: str,
            progress: Callable[[float], None], cancelled: Callable[[], bool]) -> Path:
    """Run the converter on `directory` into `out_path` (renamed into place only when it succeeded).

    progress(0..1) follows its output; cancelled() is looked at while it runs and kills it. Raises
    ConversionCancelled, or ConversionError(500, the output's last lines) when it fails."""
    directory, out_path = Path(directory), Path(out_path)
    _check_outtype(outtype)
    check_checkpoint(directory)
    converter = find_converter(converter_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # No braces in the name: the converter fills {ftype}-style templates in --outfile.
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:12]}.partial")
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # so the converter puts its own gguf-py first, matching its code
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(converter / "gguf-py"), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, str(converter / CONVERTER_SCRIPT), str(directory), "--outfile", str(tmp),
               "--outtype", outtype]
    log.info("converting %s to %s (%s)", directory, out_path, outtype)
    child = subprocess.Popen(command, cwd=str(converter), env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    output = _Output(child.stdout, _expected_tensors(directory))
    reader = threading.Thread(target=output.read_all, name="convert-output", daemon=True)
    reader.start()
    reported = -1.0
    try:
        while True:
            try:
                child.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancelled():
                _kill(child)
                raise ConversionCancelled()
            if output.fraction > reported:
                reported = output.fraction
                progress(reported)
        reader.join()
        if child.returncode != 0:
            raise ConversionError(500, f"{CONVERTER_SCRIPT} failed (exit status {child.returncode}): "
                                       + (output.tail() or "no output"))
        if not tmp.is_file():
            raise ConversionError(500, f"{CONVERTER_SCRIPT} exited 0 but wrote no file: " + output.tail())
        os.replace(tmp, out_path)
    finally:
        if child.poll() is None:
            _kill(child)
        reader.join(timeout=KILL_GRACE_S)
        tmp.unlink(missing_ok=True)
    progress(1.0)
    log.info("converted %s to %s", directory, out_path)
    return out_path


def _kill(child: subprocess.Popen) -> None:
    """Stop the converter and anything it started (its own session): TERM, then KILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _expected_tensors(directory: Path) -> Optional[int]:
    """How many tensors the checkpoint holds (safetensors headers), to scale the per-tensor lines; None if unknown."""
    total = 0
    for path in directory.glob("*.safetensors"):
        try:
            with path.open("rb") as handle:
                size = int.from_bytes(handle.read(8), "little")
                if not 0 < size < 100_000_000:
                    return None
                header = json.loads(handle.read(size))
        except (OSError, ValueError):
            return None
        total += sum(1 for key in header if key != "__metadata__")
    return total or None


class _Output:
    """The converter's merged stdout/stderr: progress from its lines and tqdm bar, and the last lines kept."""

    def __init__(self, stream, expected_tensors: Optional[int]):
        self._stream = stream
        self._expected = expected_tensors
        self._tensors = 0
        self._lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.fraction = 0.0

    def read_all(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        fd = self._stream.fileno()
        while True:
            chunk = os.read(fd, 65536)
            text = pending + decoder.decode(chunk, final=not chunk)
            # tqdm redraws its bar after "\r"; ordinary lines end with "\n".
            parts = re.split(r"(\r|\n)", text)
            pending = "" if not chunk else parts.pop()
            for segment, end in zip(parts[::2], parts[1::2] + [""]):
                self._segment(segment, is_line=end == "\n" or not chunk)
            # tqdm writes "\r" before each redraw, not after: the bar on screen is the unfinished segment.
            self._bar(pending)
            if not chunk:
                break
        self._stream.close()

    def _segment(self, text: str, is_line: bool) -> None:
        if not text.strip():
            return
        if self._bar(text):
            return  # a bar is not worth keeping among the last lines
        if _TENSOR_LINE.search(text):
            self._tensors += 1
            if self._expected:
                self._advance(TENSOR_SHARE * min(self._tensors / self._expected, 1.0))
        if is_line:
            self._lines.append(text.rstrip())

    def _bar(self, text: str) -> bool:
        """Follow a "Writing: NN%|" bar; whether `text` was one."""
        bar = _WRITING.search(text)
        if bar:
            self._advance(TENSOR_SHARE + (1 - TENSOR_SHARE) * min(int(bar.group(1)), 100) / 100)
        return bar is not None

    def _advance(self, value: float) -> None:
        # Never backwards, and below 1.0 until the file is in place.
        self.fraction = max(self.fraction, min(value, 0.99))

    def tail(self) -> str:
        return "\n".join(self._lines)
