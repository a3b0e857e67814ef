"""The configured model paths (`models_dir`, `manifests_dir`): what each one is, its models, its problem.

`manifests_dir` may name an Ollama store's root (holding `manifests/` and `blobs/`) or its `manifests/`
folder. A `models_dir` entry that is a store's `blobs/` folder is read as that store (its files are
content-addressed, not named `.gguf`). A store named by several entries is read once.
"""
from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Iterable

from ollama_server.models.catalogue import ModelSpec
from ollama_server.models.catalogue import scan_directory
from ollama_server.models.once_log import OnceLog
from ollama_server.models.ollama_store import scan_store

log = logging.getLogger(__name__)

DIRECTORY = "directory"
OLLAMA_STORE = "ollama_store"
_BLOB_NAME = re.compile(r"sha256-[0-9a-f]{64}")
_BLOB_PEEK = 64  # directory entries looked at to tell a blobs/ folder from a models folder


@dataclass(frozen=True)
class SourcePath:
    """One configured path and how it is read: a `.gguf` directory, an Ollama store, or not at all."""

    setting: str  # "models_dir" | "manifests_dir"
    path: str     # as configured
    kind: str = ""      # DIRECTORY | OLLAMA_STORE | "" when unusable
    root: str = ""      # the directory scanned, or the store root
    problem: str = ""   # why nothing is read from it; "" when usable

    def report(self) -> dict[str, Any]:
        """A JSON-ready line for /health."""
        out: dict[str, Any] = {"setting": self.setting, "path": self.path}
        if self.problem:
            out.update(status="error", error=self.problem)
        else:
            out.update(status="ok", kind=self.kind)
            if self.kind == OLLAMA_STORE:
                out["store"] = self.root
        return out


def _directory_problem(path: Path) -> str:
    """Why `path` cannot be read as a directory, or ""."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(mode):
        return "is not a directory"
    if not os.access(path, os.R_OK | os.X_OK):
        return "cannot be read: permission denied"
    return ""


def _holds_blobs(path: Path) -> bool:
    """Whether a directory looks like an Ollama blobs/ folder: sha256-<hex> files and no .gguf among the first few."""
    found = False
    try:
        with os.scandir(path) as listing:
            for count, entry in enumerate(listing):
                if count >= _BLOB_PEEK:
                    break
                if entry.name.endswith(".gguf"):
                    return False
                found = found or bool(_BLOB_NAME.fullmatch(entry.name))
    except OSError:
        return False
    return found


def classify_models_dir(path: str) -> SourcePath:
    """A `models_dir` entry: a directory of `.gguf` files, or the blobs/ folder of an Ollama store."""
    where = Path(path)
    problem = _directory_problem(where)
    if problem:
        return SourcePath("models_dir", path, problem=problem)
    store = where.parent
    blobs = _holds_blobs(where)
    if (store / "manifests").is_dir() and (where.name == "blobs" or blobs):
        return SourcePath("models_dir", path, OLLAMA_STORE, str(store))
    if blobs:
        return SourcePath("models_dir", path, problem=(
            "holds Ollama blobs (sha256-<hex> files) but has no manifests/ folder next to it, so they have "
            "no model names; give the store (the folder holding manifests/ and blobs/) as manifests_dir"))
    return SourcePath("models_dir", path, DIRECTORY, path)


def classify_manifests_dir(path: str) -> SourcePath:
    """`manifests_dir`: an Ollama store's root, or its manifests/ folder."""
    where = Path(path)
    problem = _directory_problem(where)
    if problem:
        return SourcePath("manifests_dir", path, problem=problem)
    if (where / "manifests").is_dir():
        return SourcePath("manifests_dir", path, OLLAMA_STORE, str(where))
    if where.name == "manifests":
        return SourcePath("manifests_dir", path, OLLAMA_STORE, str(where.parent))
    return SourcePath("manifests_dir", path, problem=(
        "is not an Ollama store: it holds no manifests/ folder and is not one (give the store root, "
        "e.g. ~/.ollama/models, or its manifests/ folder)"))


class ConfiguredSources:
    """The `models_dir` entries and `manifests_dir`, in priority order, re-classified on every scan."""

    def __init__(self, models_dirs: Iterable[str], manifests_dir: str = ""):
        self._once = OnceLog(log)
        self._entries = [("models_dir", str(d)) for d in models_dirs]
        if manifests_dir:
            self._entries.append(("manifests_dir", str(manifests_dir)))

    def classify(self) -> list[SourcePath]:
        """Every configured path as it is now; a problem is logged as a warning the first time it is seen."""
        found = []
        for setting, path in self._entries:
            entry = classify_models_dir(path) if setting == "models_dir" else classify_manifests_dir(path)
            if entry.problem:
                self._once.warn(f"{setting} {path} {entry.problem}; no models are read from it")
            found.append(entry)
        return found

    def scan(self) -> list[ModelSpec]:
        """The models of every usable path in order; each Ollama store once however many entries name it."""
        specs: list[ModelSpec] = []
        stores: set[str] = set()
        for entry in self.classify():
            if entry.problem:
                continue
            try:
                if entry.kind == DIRECTORY:
                    specs.extend(scan_directory(entry.root, self._once.warn))
                    continue
                key = os.path.realpath(entry.root)
                if key not in stores:
                    stores.add(key)
                    specs.extend(scan_store(entry.root, "ollama", self._once.warn))
            except Exception:  # one bad path must not hide the others
                log.exception("reading %s %s failed; its models are left out of this listing",
                              entry.setting, entry.path)
        return specs

    def report(self) -> list[dict[str, Any]]:
        """Each configured path with `status` ok (and how it is read) or error (and why)."""
        return [entry.report() for entry in self.classify()]
