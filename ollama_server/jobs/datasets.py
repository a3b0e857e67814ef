"""Eval and data-generation datasets: resolving a dataset_ref safely and reading its JSONL examples."""
from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Optional

MAX_DATASET_BYTES = 64 * 1024 * 1024
MAX_ECHO = 200
PROMPT_KEYS = ("prompt", "question", "input", "instruction")
REFERENCE_KEYS = ("answer", "reference", "output", "response", "target", "label")


class DatasetError(ValueError):
    """A dataset_ref that cannot be used, or a dataset file that cannot be read; the message is for the caller."""


@dataclass(frozen=True)
class Example:
    """One dataset line: its 0-based example index, 1-based line number, prompt, reference and other keys."""

    index: int
    line: int
    id: Optional[str]
    prompt: str
    reference: Optional[str]
    extra: dict = field(default_factory=dict)


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """At most `limit` characters of untrusted text, for error messages."""
    return text if len(text) <= limit else text[:limit] + "…"


def resolve_dataset(ref: str, datasets_dir: Path) -> Path:
    """The dataset file `ref` names (a bare name, a relative path, or an absolute path inside datasets_dir)."""
    if not isinstance(ref, str) or not ref.strip():
        raise DatasetError("dataset_ref must be a non-empty string naming a .jsonl file in the datasets directory")
    shown = clip(ref)
    if "\x00" in ref:
        raise DatasetError(f"dataset_ref '{shown}' contains a NUL character")
    given = Path(ref)
    if not given.name.endswith(".jsonl"):
        raise DatasetError(f"dataset_ref '{shown}' must name a .jsonl file")
    candidate = given if given.is_absolute() else Path(datasets_dir) / given
    try:
        # resolving both sides defeats '..' and symlinks that point out, and a datasets_dir that is a symlink
        base = Path(datasets_dir).resolve()
        target = candidate.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop
        raise DatasetError(f"dataset_ref '{shown}' cannot be resolved ({exc.__class__.__name__})") from None
    if target != base and base not in target.parents:
        raise DatasetError(f"dataset_ref '{shown}' is outside the datasets directory")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        raise DatasetError(f"dataset_ref '{shown}' was not found in the datasets directory") from None
    except OSError as exc:  # e.g. a name too long for the file system
        reason = exc.strerror or exc.__class__.__name__
        raise DatasetError(f"dataset_ref '{shown}' cannot be opened ({reason})") from None
    if stat.S_ISDIR(mode):
        raise DatasetError(f"dataset_ref '{shown}' is a directory, not a .jsonl file")
    if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
        raise DatasetError(f"dataset_ref '{shown}' is not a regular file")
    return target


def read_examples(path: Path, require_reference: bool = True, limit: Optional[int] = None) -> list[Example]:
    """The examples of a JSONL dataset, in file order; errors name the file and the 1-based line.

    With `limit`, reading stops after that many examples: lines after them are neither read nor validated.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise DatasetError(f"limit must be a non-negative integer, got {clip(repr(limit))}")
    path = Path(path)
    name = clip(path.name)
    max_bytes = MAX_DATASET_BYTES  # read at call time so tests (and operators) can change it
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{name}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if size > max_bytes:
        raise DatasetError(f"{name} is {size / 2**20:.1f} MiB; datasets are limited to {max_bytes / 2**20:g} MiB")
    examples: list[Example] = []
    if limit == 0:
        return examples
    read = 0
    try:
        with open(path, "rb") as handle:
            # bytes split only on \n: U+2028 inside a JSON string is not a line break here
            for number, raw in enumerate(handle, start=1):
                read += len(raw)
                if read > max_bytes:  # the file grew after the size check
                    raise DatasetError(f"{name} is larger than the {max_bytes / 2**20:g} MiB dataset limit")
                text = decode_line(raw, number, name)
                if not text.strip():
                    continue
                examples.append(parse_line(text, number, len(examples), name, require_reference))
                if limit is not None and len(examples) >= limit:
                    break
    except OSError as exc:
        raise DatasetError(f"{name}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    return examples


def decode_line(raw: bytes, number: int, name: str) -> str:
    """One line as text; a byte-order mark on the first line is dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name} line {number}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
    return text.lstrip("\ufeff") if number == 1 else text


def parse_line(text: str, number: int, index: int, name: str, require_reference: bool) -> Example:
    """One JSON object line as an Example, by the prompt/reference key rules."""
    where = f"{name} line {number}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DatasetError(f"{where}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python will convert
        raise DatasetError(f"{where}: not valid JSON ({clip(str(exc), 100)})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {json_type(obj)}")
    prompt_key = pick(obj, PROMPT_KEYS)
    if prompt_key is None:
        if any(key in obj for key in PROMPT_KEYS):
            raise DatasetError(f"{where}: the prompt is empty")
        raise DatasetError(f"{where}: no prompt (expected one of {', '.join(PROMPT_KEYS)})")
    prompt = obj[prompt_key]
    if not isinstance(prompt, str):
        raise DatasetError(f"{where}: '{prompt_key}' must be a non-empty string, got {json_type(prompt)}")
    reference_key = pick(obj, REFERENCE_KEYS)
    reference = None
    if reference_key is not None:
        reference = as_text(obj[reference_key])
        if reference is None:
            raise DatasetError(f"{where}: '{reference_key}' must be a string or a number, "
                               f"got {json_type(obj[reference_key])}")
    elif require_reference:
        if any(key in obj and obj[key] is not None for key in REFERENCE_KEYS):
            raise DatasetError(f"{where}: the reference answer is empty")
        raise DatasetError(f"{where}: no reference answer (expected one of {', '.join(REFERENCE_KEYS)})")
    example_id = None
    if obj.get("id") is not None:
        example_id = as_text(obj["id"])
        if example_id is None or isinstance(obj["id"], bool):
            raise DatasetError(f"{where}: 'id' must be a string or a number, got {json_type(obj['id'])}")
    used = {prompt_key, reference_key, "id"}
    # the keys not chosen stay available: data generation wants an Alpaca row's instruction and input both
    extra = {key: value for key, value in obj.items() if key not in used}
    return Example(index=index, line=number, id=example_id, prompt=prompt, reference=reference, extra=extra)


def pick(obj: dict, keys: tuple[str, ...]) -> Optional[str]:
    """The first key present with a value (null and blank strings count as absent, as in Alpaca's empty input)."""
    for key in keys:
        value = obj.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        return key
    return None


def as_text(value: Any) -> Optional[str]:
    """A string or number as text (booleans in JSON spelling, as BoolQ's answers are); None otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return None


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
