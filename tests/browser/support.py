"""Browser-test helpers: where Chromium is, how it is launched, page problem recording, screenshots, waiting."""
from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Optional
from typing import TypeVar
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Debian's package; Playwright's own browser downloads cannot be reached from here (and are never wanted).
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}
# Headless, no sandbox (root in a container), and nothing that phones home or shows first-run UI.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-default-browser-check", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions", "--metrics-recording-only"]
# Chromium logs every >= 400 sub-resource as a console error as well; matched so a declared one is not counted twice.
_FAILED_RESOURCE = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")

T = TypeVar("T")


def browser_unavailable_reason() -> Optional[str]:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing (make system-deps installs Debian's chromium package)"
    return None


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, interval: float = 0.1,
               message: str = "") -> T:
    """Poll `predicate` until it returns something truthy and return that; the deadline only guards a failure."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError as exc:  # a predicate may assert; its last complaint explains the timeout
            last_error = exc
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"condition not met within {timeout}s: {what}"
                                 + (f" (last: {last_error})" if last_error else ""))
        time.sleep(interval)


def screenshot(page: Any, name: str, directory: Optional[Path] = None) -> Path:
    """Save a full-page PNG of `page` as docs/screenshots/<name>.png (or under `directory`) and return its path."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '.', '_' and '-' only")
    target = (directory or SCREENSHOTS) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


@dataclass
class PageProblems:
    """Everything that went wrong on one page: console errors, uncaught exceptions, failed requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)
    allowed_http: list[tuple[str, Optional[int]]] = field(default_factory=list)
    expecting_errors: bool = False

    def allow_http_error(self, url_part: str, status: Optional[int] = None) -> None:
        """Declare an expected >= 400 response (any status unless `status`) from URLs containing `url_part`."""
        self.allowed_http.append((url_part, status))

    def expect_errors(self) -> "PageProblems":
        """This test provokes errors on purpose: teardown will not fail on them; inspect them here instead."""
        self.expecting_errors = True
        return self

    def is_allowed(self, url: str, status: int) -> bool:
        # Chromium probes /favicon.ico by itself on every origin, even for a JSON document; a page that
        # links its own icon is still checked, because that icon has another URL.
        if urlsplit(url).path == "/favicon.ico" and status == 404:
            return True
        return any(part in url and (want is None or want == status) for part, want in self.allowed_http)

    def on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        failed = _FAILED_RESOURCE.match(message.text)
        url = (message.location or {}).get("url", "")
        if failed and self.is_allowed(url, int(failed.group(1))):
            return
        self.console_errors.append(f"{message.text} ({url})" if url else message.text)

    def on_page_error(self, error: Any) -> None:
        self.page_errors.append(str(error))

    def on_request_failed(self, request: Any) -> None:
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(self, response: Any) -> None:
        if response.status >= 400 and not self.is_allowed(response.url, response.status):
            self.http_errors.append(f"{response.request.method} {response.url}: {response.status}")

    def all(self) -> list[str]:
        """Every problem, one line each, labelled by kind."""
        kinds = (("console error", self.console_errors), ("page error", self.page_errors),
                 ("request failed", self.failed_requests), ("HTTP error", self.http_errors))
        return [f"{label}: {item}" for label, items in kinds for item in items]
