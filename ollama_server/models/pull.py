"""POST /api/pull without Flask: a resumable, verified download into the managed Ollama-layout store."""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Callable
from typing import Iterator
from typing import Optional

import requests
import urllib3

from ollama_server.models import store_writer
from ollama_server.models.managed_store import ManagedStore
from ollama_server.models.partials import expire_partials
from ollama_server.models.pull_source import PullError
from ollama_server.models.pull_source import PullPlan
from ollama_server.models.pull_source import hf_digest
from ollama_server.models.url_safety import PublicOnlyAdapter
from ollama_server.models.url_safety import UnsafeURL
from ollama_server.models.url_safety import check_url
from ollama_server.models.url_safety import refusal_in
from ollama_server.settings import SETTINGS_BY_NAME

log = logging.getLogger(__name__)
MAX_REDIRECTS = 5
# The setting's default, for callers that do not pass the configured value.
DEFAULT_PARTIAL_MAX_AGE = float(SETTINGS_BY_NAME["partial_download_max_age"].default)
CHUNK = 1 << 16
PROGRESS_BYTES = 1 << 20
PROGRESS_SECONDS = 0.2
TIMEOUT = (15.0, 60.0)  # connect, read (seconds between bytes)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def make_session(allow_private: bool) -> requests.Session:
    """A session that ignores proxy/netrc environment and, unless allowed, connects to public peers only."""
    session = requests.Session()
    session.trust_env = False
    if not allow_private:
        session.mount("http://", PublicOnlyAdapter(max_retries=0))
        session.mount("https://", PublicOnlyAdapter(max_retries=0))
    return session


def checked(check: Callable[[str], None], url: str) -> None:
    """Run a URL check; a refusal is a 400 and a host that does not resolve a 502."""
    try:
        check(url)
    except UnsafeURL as exc:
        raise PullError(400, str(exc)) from None
    except socket.gaierror as exc:
        raise PullError(502, f"cannot resolve the host of {url}: {exc}") from None


def open_source(session: requests.Session, url: str, headers: dict, check: Callable[[str], None],
                verify: bool = True) -> requests.Response:
    """GET with redirects followed by hand, every hop checked by `check` before it is contacted."""
    for _ in range(MAX_REDIRECTS + 1):
        checked(check, url)
        try:
            response = session.get(url, headers=headers, stream=True, allow_redirects=False, timeout=TIMEOUT,
                                   verify=verify)
        except requests.ConnectionError as exc:
            refusal = refusal_in(exc)
            raise PullError(400 if refusal else 502, refusal or f"cannot connect to {url}: {exc}") from None
        except requests.RequestException as exc:
            raise PullError(502, f"cannot fetch {url}: {exc}") from None
        if not response.is_redirect:
            return response
        url = requests.compat.urljoin(url, response.headers["Location"])
        response.close()
    raise PullError(502, f"too many redirects (more than {MAX_REDIRECTS})")


def _lock(path: Path):
    """Open and exclusively lock the partial file; PullError(409) when another pull holds it."""
    for _ in range(3):
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise PullError(409, "a pull of this source is already in progress") from None
        try:  # the file we locked must still be the partial, not a blob renamed away meanwhile
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()
    raise PullError(409, "a pull of this source is already in progress")


class Interrupted(Exception):
    """The connection dropped or stalled mid-body; the partial file is kept for a resume."""


class Download:
    """One source URL downloading into blobs/partial-<sha256 of the URL>.partial, resumed when possible."""

    def __init__(self, blobs: Path, url: str, session: requests.Session, check: Callable[[str], None],
                 verify: bool = True):
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        self.url, self.session, self.check, self.verify = url, session, check, verify
        self.path = blobs / f"partial-{key}.partial"
        self.meta = blobs / f"partial-{key}.json"  # the validator (ETag) sent back as If-Range
        self.handle = None
        self.response: Optional[requests.Response] = None
        self.offset = 0
        self.total: Optional[int] = None
        self.complete = False  # the partial already holds the whole file (the source answered 416)
        self.renamed = False  # the partial became a blob

    def open(self) -> None:
        """Lock the partial and get the response: 206 appends to it, 200 starts over."""
        self.handle = _lock(self.path)
        self.handle.seek(0, os.SEEK_END)
        offset = self.handle.tell()
        response = self._get(offset)
        if offset and response.status_code == 416:
            whole = re.match(r"^bytes \*/(\d+)$", response.headers.get("Content-Range", ""))
            response.close()
            if whole and int(whole.group(1)) == offset:  # an earlier pull got every byte: just verify them
                self.offset = self.total = offset
                self.complete = True
                return
            response = self._get(0)  # a stale partial: start over
        if response.status_code == 206 and offset:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                response.close()
                self.discard()
                raise PullError(502, "the source answered a range that does not fit the partial download; "
                                     "pull again to start over")
            self.offset = offset
            self.total = int(match.group(3)) if match.group(3) != "*" else None
        elif response.status_code == 200:
            self.handle.truncate(0)
            length = response.headers.get("Content-Length", "")
            self.total = int(length) if length.isdigit() else None
            self._remember(response)
        else:
            response.close()
            status = 404 if response.status_code in (404, 410) else 502
            raise PullError(status, f"the source answered HTTP {response.status_code} for {self.url}")
        self.response = response

    def _get(self, offset: int) -> requests.Response:
        headers = {"Accept-Encoding": "identity", "User-Agent": "ollama_server-pull"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = self._validator()
            if validator:
                headers["If-Range"] = validator
        return open_source(self.session, self.url, headers, self.check, self.verify)

    def _validator(self) -> Optional[str]:
        try:
            return json.loads(self.meta.read_text()).get("validator")
        except (OSError, ValueError, AttributeError):
            return None

    def _remember(self, response: requests.Response) -> None:
        etag = response.headers.get("ETag", "")
        validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        self.meta.write_text(json.dumps({"url": self.url, "validator": validator}))

    def hash_existing(self):
        """A sha256 already fed with the bytes kept from an earlier attempt."""
        digest = hashlib.sha256()
        self.handle.seek(0)
        remaining = self.offset
        while remaining:
            block = self.handle.read(min(remaining, 1 << 20))
            if not block:
                raise PullError(500, "the partial download shrank while resuming it")
            digest.update(block)
            remaining -= len(block)
        self.handle.seek(self.offset)
        return digest

    def chunks(self) -> Iterator[bytes]:
        """The body, exactly as sent; a drop or a timeout becomes a PullError that keeps the partial."""
        if self.complete:
            return
        try:
            yield from self.response.raw.stream(CHUNK, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError, TimeoutError) as exc:
            raise Interrupted(str(exc)) from None

    def sync(self) -> None:
        """Flush and fsync the partial before it is renamed."""
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def discard(self) -> None:
        """Delete the partial (bad content): the next pull starts from scratch."""
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the response and the partial (releasing its lock); an empty partial is removed."""
        if self.response is not None:
            self.response.close()
        if self.handle is not None:
            if not self.renamed and os.fstat(self.handle.fileno()).st_size == 0:
                self.discard()  # still locked by us: nobody else can be using it
            self.handle.close()


def _progress(label: str, digest: Optional[str], total: Optional[int], completed: int) -> dict:
    event: dict = {"status": f"pulling {label}"}
    if digest:
        event["digest"] = f"sha256:{digest}"
    if total is not None:
        event["total"] = total
    event["completed"] = completed
    return event


def pull(plan: PullPlan, managed: ManagedStore, allow_private: bool = False, insecure: bool = False,
         on_success: Optional[Callable[[], None]] = None,
         partial_max_age: float = DEFAULT_PARTIAL_MAX_AGE) -> Iterator[dict]:
    """Progress events of one pull. Anything raised before the first event means nothing was streamed.

    First, partial downloads of abandoned pulls older than partial_max_age seconds are deleted.
    """
    store = managed.root
    blobs = store / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    try:
        expire_partials(blobs, partial_max_age)
    except OSError:  # housekeeping: it must never fail the pull itself
        log.exception("expiring partial downloads in %s failed", blobs)
    expected, origin = plan.digest, "request"
    if plan.hf:
        checked(lambda url: check_url(url, allow_private), plan.url)
        reported = hf_digest(plan)
        if expected and reported and expected != reported:
            raise PullError(400, f"digest mismatch: expected sha256:{expected}, Hugging Face reports sha256:{reported}")
        if reported and not expected:
            expected, origin = reported, "hf"
    label = expected[:12] if expected else plan.file_name
    if expected and store_writer.blob_path(store, expected).is_file():
        size = store_writer.blob_path(store, expected).stat().st_size
        yield {"status": "pulling manifest"}
        yield _progress(label, expected, size, size)
        yield {"status": "writing manifest"}
        store_writer.write_model(managed, plan.name, expected, size)
    else:
        yield from _download(plan, managed, blobs, expected, origin, label, allow_private, insecure)
    if on_success is not None:
        on_success()
    yield {"status": "success"}


def _download(plan: PullPlan, managed: ManagedStore, blobs: Path, expected: Optional[str], origin: str, label: str,
              allow_private: bool, insecure: bool) -> Iterator[dict]:
    check = lambda url: check_url(url, allow_private)  # noqa: E731
    checked(check, plan.url)  # before the partial file is even created
    session = make_session(allow_private)
    download = Download(blobs, plan.url, session, check, verify=not insecure)
    try:
        download.open()
        yield {"status": "pulling manifest"}
        digest = download.hash_existing()
        completed, total = download.offset, download.total
        yield _progress(label, expected, total, completed)
        last_bytes, last_time = completed, time.monotonic()
        cause = ""
        try:
            for chunk in download.chunks():
                download.handle.write(chunk)
                digest.update(chunk)
                completed += len(chunk)
                if completed - last_bytes >= PROGRESS_BYTES or time.monotonic() - last_time >= PROGRESS_SECONDS:
                    last_bytes, last_time = completed, time.monotonic()
                    yield _progress(label, expected, total, completed)
        except Interrupted as exc:
            cause = f" ({exc})"
        download.handle.flush()
        if cause or (total is not None and completed != total):
            raise PullError(502, f"download interrupted after {completed} of {total if total is not None else '?'} "
                                 f"bytes{cause}; pull again to resume")
        yield _progress(label, expected, completed, completed)
        yield {"status": "verifying sha256 digest"}
        actual = digest.hexdigest()
        if expected and actual != expected:
            download.discard()
            raise PullError(400 if origin == "request" else 502,
                            f"digest mismatch: expected sha256:{expected}, got sha256:{actual}")
        download.handle.seek(0)
        if download.handle.read(4) != b"GGUF":
            download.discard()
            raise PullError(502, f"{plan.file_name} is not a GGUF file")
        download.sync()
        yield {"status": "writing manifest"}
        store_writer.write_model(managed, plan.name, actual, completed, partial=download.path)
        download.renamed = True
        download.meta.unlink(missing_ok=True)
    finally:
        download.close()
        session.close()
