"""What a pull request asks for: the model name, the http(s) URL (hf:// resolved) and the expected digest."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote
from urllib.parse import urlsplit

from ollama_server.models import names
from ollama_server.models.url_safety import UnsafeURL
from ollama_server.models.url_safety import split_url

DIGEST = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
REGISTRY_REFUSAL = ("pulling from the Ollama registry is not supported; "
                    "give a source URL (http(s):// or hf://owner/repo/file.gguf)")
_HF_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PullError(Exception):
    """A pull failed; `status` is the HTTP status to answer with when nothing has been streamed yet."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class HfRef:
    """A file in a Hugging Face repository: hf://owner/repo[@revision]/path/file.gguf."""

    repo_id: str
    filename: str
    revision: Optional[str] = None


@dataclass(frozen=True)
class PullPlan:
    """A validated pull: store it as `name` from `url`, checked against `digest` (hex) when given."""

    name: str
    url: str
    file_name: str
    digest: Optional[str] = None
    hf: Optional[HfRef] = None


def parse_digest(text: Optional[str]) -> Optional[str]:
    """The 64 lower-case hex digits of a "sha256:<hex>" (or "sha256-<hex>") digest; None for none."""
    if text is None or text == "":
        return None
    match = DIGEST.match(text) if isinstance(text, str) else None
    if not match:
        raise PullError(400, f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    return match.group(1).lower()


def parse_hf(ref: str) -> HfRef:
    """Split hf://owner/repo[@revision]/path/file.gguf; anything path-like or not a .gguf is a 400."""
    rest = ref[len("hf://"):]
    parts = rest.split("/")
    if len(parts) < 3 or any(part in ("", ".", "..") for part in parts):
        raise PullError(400, f"invalid Hugging Face reference {ref!r}: expected hf://owner/repo/file.gguf")
    owner, repo, files = parts[0], parts[1], parts[2:]
    repo, at, revision = repo.partition("@")
    if not all(_HF_PART.match(part) for part in (owner, repo, *files)) or (at and not _HF_PART.match(revision)):
        raise PullError(400, f"invalid Hugging Face reference {ref!r}")
    if not files[-1].lower().endswith(".gguf"):
        raise PullError(400, f"invalid Hugging Face reference {ref!r}: the file must be a .gguf")
    return HfRef(f"{owner}/{repo}", "/".join(files), revision or None)


def hf_url(ref: HfRef) -> str:
    """The download URL of a Hugging Face file (huggingface_hub's own rule)."""
    from huggingface_hub import hf_hub_url
    return hf_hub_url(ref.repo_id, ref.filename, revision=ref.revision)


def is_source(text: str) -> bool:
    """True when the text is a URL (has a scheme) rather than a model name."""
    return isinstance(text, str) and "://" in text


def _normalized(name: str) -> str:
    try:
        return names.normalize(name)
    except names.InvalidModelName as exc:
        raise PullError(400, str(exc)) from None


def _file_name(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])


def plan(model: Optional[str], source: Optional[str] = None, digest: Optional[str] = None) -> PullPlan:
    """Validate a pull request without touching the network; PullError(400) says what is wrong."""
    expected = parse_digest(digest)
    if not model and not source:
        raise PullError(400, "model is required")
    if not source:
        if not is_source(model):
            _normalized(model)  # a bad name is reported as such, a good one gets the honest refusal
            raise PullError(400, REGISTRY_REFUSAL)
        source, model = model, None
    if not isinstance(source, str) or not is_source(source):
        raise PullError(400, f"invalid source {source!r}: give an http(s):// URL or hf://owner/repo/file.gguf")
    hf = parse_hf(source) if source[:5].lower() == "hf://" else None
    url = hf_url(hf) if hf else source
    try:
        split_url(url)
    except UnsafeURL as exc:
        raise PullError(400, str(exc)) from None
    file_name = hf.filename.rpartition("/")[2] if hf else _file_name(url)
    if model:
        name = _normalized(model)
    else:
        stem = file_name[:-5] if file_name.lower().endswith(".gguf") else file_name
        try:
            name = _normalized(names.from_filename(stem))
        except PullError:
            raise PullError(400, f"cannot derive a model name from {source!r}; give one in 'model'") from None
    return PullPlan(name=name, url=url, file_name=file_name or "model", digest=expected, hf=hf)


def hf_digest(plan: PullPlan) -> Optional[str]:
    """The sha256 Hugging Face reports for an LFS file (its ETag), or None when it gives none."""
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.errors import RevisionNotFoundError
    try:
        meta = get_hf_file_metadata(plan.url, token=False)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise PullError(404, f"not found on Hugging Face: {plan.hf.repo_id}/{plan.hf.filename} ({exc})") from None
    except Exception as exc:  # network, HTTP: the hub's own error types
        raise PullError(502, f"cannot read Hugging Face metadata for {plan.url}: {exc}") from None
    etag = (meta.etag or "").strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None
