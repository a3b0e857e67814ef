"""Trainer-ready shards: train_shards_out/shard_<YYYY-MM-DD>_<NNN>.jsonl, published whole or not at all."""
from __future__ import annotations

import json
import os
import re
import unicodedata
from datetime import date
from pathlib import Path
from typing import Callable
from typing import Optional

SHARD_NAME = re.compile(r"shard_(\d{4}-\d{2}-\d{2})_(\d{3,9})\.jsonl")


class ShardError(ValueError):
    """A shard name that is not one this service writes; the message is for the caller."""


def shard_name(day: date, number: int) -> str:
    """shard_<YYYY-MM-DD>_<NNN>.jsonl for a date and a 1-based number."""
    return f"shard_{day.isoformat()}_{number:03d}.jsonl"


def partial_name(job_id: str, final: str) -> str:
    """The hidden in-progress name of a job's shard; the job id keeps concurrent jobs apart."""
    return f".{job_id}.{final}.partial"


def highest_number(shards_dir: Path, day: date) -> int:
    """The highest shard number taken for a date, counting finished shards and any job's partial one."""
    prefix = f"shard_{day.isoformat()}_"
    highest = 0
    try:
        names = os.listdir(shards_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(".") and name.endswith(".partial"):
            name = name[:-len(".partial")].rsplit(".", 2)
            name = ".".join(name[-2:])
        match = SHARD_NAME.fullmatch(name)
        if match and name.startswith(prefix):
            highest = max(highest, int(match.group(2)))
    return highest


class ShardWriter:
    """Appends a job's records to shards of at most max_examples lines, publishing each when full or closed."""

    def __init__(self, shards_dir: Path, job_id: str, max_examples: int,
                 today: Callable[[], date] = date.today) -> None:
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive integer, got {max_examples!r}")
        if not job_id or "/" in job_id or "\x00" in job_id or job_id in (".", ".."):
            raise ValueError(f"job_id {job_id!r} cannot be part of a file name")
        self.shards_dir = Path(shards_dir)
        self.job_id = job_id
        self.max_examples = max_examples
        self.today = today
        self._finished: list[str] = []
        self._handle = None
        self._day: Optional[date] = None
        self._number = 0
        self._partial: Optional[Path] = None
        self._lines = 0

    @property
    def finished(self) -> list[str]:
        """The names of this job's completed shards, in the order they were finished."""
        return list(self._finished)

    @property
    def pending_lines(self) -> int:
        """Lines in the shard being written (not yet published)."""
        return self._lines

    def add(self, record: dict) -> None:
        """Append one record as a JSON line; publishes the shard when it reaches max_examples."""
        if not isinstance(record, dict):
            raise TypeError("a shard record must be a dict")
        # every line names its job, which is how resume() recognises a shard published before a crash
        line = record if "job_id" in record else {**record, "job_id": self.job_id}
        if self._handle is None:
            self._open()
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._lines += 1
        if self._lines >= self.max_examples:
            self._publish()

    def close(self) -> None:
        """Publish the shard in progress (if it has lines); the writer can be used again afterwards."""
        if self._handle is not None:
            self._publish()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            self.close()
        else:  # a failed job leaves its partial shard for resume() rather than publishing half of it
            self._abandon()

    def resume(self, completed: list[str]) -> list[str]:
        """After a crash: drop this job's partial shards and return its finished shards.

        Those are `completed` plus any shard whose first line carries this job id (published just before
        the crash, before the job could record it). The job regenerates the examples of the dropped partial.
        """
        self._abandon()
        for leftover in self.shards_dir.glob(f".{glob_escape(self.job_id)}.shard_*.partial"):
            leftover.unlink(missing_ok=True)
        finished = list(dict.fromkeys(completed))
        if self.shards_dir.is_dir():
            for path in sorted(self.shards_dir.iterdir()):
                if path.name not in finished and SHARD_NAME.fullmatch(path.name) and first_job_id(path) == self.job_id:
                    finished.append(path.name)
        self._finished = finished
        return list(finished)

    def _open(self) -> None:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self._day = self.today()
        self._number = highest_number(self.shards_dir, self._day) + 1
        final = shard_name(self._day, self._number)
        self._partial = self.shards_dir / partial_name(self.job_id, final)
        self._handle = open(self._partial, "w", encoding="utf-8")
        self._lines = 0

    def _publish(self) -> None:
        handle, partial, day = self._handle, self._partial, self._day
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self._handle = None
        number = self._number
        while True:
            final = self.shards_dir / shard_name(day, number)
            if publish(partial, final):
                break
            # another writer published this number first: take the next free one
            number = max(number, highest_number(self.shards_dir, day)) + 1
        sync_dir(self.shards_dir)
        self._finished.append(final.name)
        self._partial = None
        self._lines = 0

    def _abandon(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._lines = 0


def publish(partial: Path, final: Path) -> bool:
    """Give the partial file its final name unless that name exists (False then); never overwrites."""
    try:
        os.link(partial, final)  # atomic, and fails rather than replacing a shard someone else finished
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links
        if final.exists():
            return False
        os.rename(partial, final)
        return True
    partial.unlink()
    return True


def sync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a power cut (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def glob_escape(text: str) -> str:
    """Text with glob metacharacters made literal."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def first_job_id(path: Path) -> Optional[str]:
    """The job_id of a shard's first line, or None when it has none or cannot be read."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
        record = json.loads(first)
    except (OSError, ValueError):
        return None
    return record.get("job_id") if isinstance(record, dict) else None


def shard_path(shards_dir: Path, name: str) -> Path:
    """The path of a shard named in a download request; ShardError unless it is a shard_<date>_<NNN>.jsonl name."""
    shown = name[:200] if isinstance(name, str) else repr(name)[:200]
    match = SHARD_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ShardError(f"shard name '{shown}' is not of the form shard_<YYYY-MM-DD>_<NNN>.jsonl")
    try:
        date.fromisoformat(match.group(1))
    except ValueError:
        raise ShardError(f"shard name '{shown}' has an invalid date") from None
    base = Path(shards_dir)
    path = base / name
    # a symlink planted in the shard directory must not serve a file from elsewhere
    if path.is_symlink() and base.resolve() not in path.resolve().parents:
        raise ShardError(f"shard name '{shown}' points outside the shard directory")
    return path


def count_lines(path: Path) -> int:
    """The number of non-blank lines in a file (OSError when it cannot be read)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                count += 1
    return count


def dedupe_key(text: str) -> str:
    """Instruction text normalized for de-duplication: lowercase, punctuation removed, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    # an apostrophe joins ("don't" = "dont"); other punctuation separates ("a-b" = "a b")
    folded = folded.replace("'", "").replace("\u2019", "")
    stripped = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in folded)
    return " ".join(stripped.split())
