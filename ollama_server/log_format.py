"""Log lines: one JSON object a line (or text for humans) with the request's id and context, secrets redacted."""
from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass
from dataclasses import fields
from datetime import datetime
from datetime import timezone
from typing import Any
from typing import Iterable
from typing import Optional
from urllib.parse import urlsplit

FORMATS = ("json", "text")
REDACTED = "***"
# Shorter values cannot be told from ordinary text: redacting a 3-letter key would garble every line.
MIN_SECRET_LENGTH = 4
TOKEN_LENGTH = 16  # a webhook URL's path or query piece at least this long is taken for a token
EXTRA_KEYS = ("api", "model", "endpoint", "remote_addr")
_OURS = "_ollama_server_log_line"  # attribute marking a handler whose format and level follow the settings

# A credential header's value, as a header line, a dict's repr or a query parameter would show it.
_HEADER_VALUE = re.compile(r"""(?i)\b((?:proxy-)?authorization|x-api-key|api[-_]key)(["']?\s*[:=]\s*["']?)"""
                           r"""(?:(bearer|basic|token)\s+)?([^\s"',;&}]+)""")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")


# --- the request being served --------------------------------------------------------------------
@dataclass
class LogContext:
    """What a log line says about the request being served: its dialect, endpoint, client, model and id."""

    api: Optional[str] = None
    endpoint: Optional[str] = None
    remote_addr: Optional[str] = None
    model: Optional[str] = None
    _id: Optional[str] = None
    _id_shown: bool = False
    earlier_id: Optional[str] = None  # the id of lines written before the route named the request

    @property
    def request_id(self) -> str:
        """The request's id; made when first needed, so that a route naming its own id first keeps one id."""
        if self._id is None:
            self._id = str(uuid.uuid4())
        self._id_shown = True
        return self._id

    def name(self, request_id: str) -> None:
        """Use `request_id` from now on (the caller's, or the id the engine books the request under)."""
        if self._id_shown and self._id != request_id and self.earlier_id is None:
            self.earlier_id = self._id  # lines already carry it: later ones name it, so both can be joined
        self._id = request_id

    def extra(self) -> dict[str, str]:
        """The line's `extra`: what is known of api, model, endpoint, remote_addr (and an earlier id)."""
        found = {key: getattr(self, key) for key in EXTRA_KEYS if getattr(self, key) is not None}
        if self.earlier_id is not None:
            found["earlier_request_id"] = self.earlier_id
        return found


_current: contextvars.ContextVar[Optional[LogContext]] = contextvars.ContextVar("ollama_server_request_log",
                                                                                default=None)


def begin_request(context: Optional[LogContext]) -> None:
    """Make `context` the request of the lines this thread logs from now on (None: no request)."""
    _current.set(context)


def current_request() -> Optional[LogContext]:
    """The request this thread serves, if any."""
    return _current.get()


def note_request_id(request_id: str) -> None:
    """Log the current request under `request_id` (the id the engine books it under)."""
    context = _current.get()
    if context is not None:
        context.name(request_id)


def note_model(name: Optional[str]) -> None:
    """Name the current request's model in its log lines."""
    context = _current.get()
    if context is not None and name:
        context.model = name


# --- redaction -----------------------------------------------------------------------------------
class Redactor:
    """Replaces known secret values and credential header values in a text with "***"."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()

    def set_values(self, values: Iterable[Any]) -> None:
        # Longest first: a secret that contains another is replaced whole, not left half visible.
        kept = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        self._values = tuple(sorted(kept, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        text = _HEADER_VALUE.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) + " " if m.group(3) else "")
                                 + REDACTED, text)
        return _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)


redact = Redactor()


def _channel_secrets(channel: Any) -> set[str]:
    """What an alert channel must not show: SMTP passwords, webhook URLs and their tokens, header values."""
    found: set[str] = set()
    config = getattr(channel, "config", None)
    found.add(getattr(config, "password", "") or "")
    env_name = getattr(config, "password_env", "") or ""
    if env_name:
        found.add(getattr(channel, "env", os.environ).get(env_name, ""))
    found.update(value for _, value in getattr(config, "headers", ()) or ())
    hook = getattr(config, "url", "") or ""
    if hook:
        parts = urlsplit(hook)
        # The token-like pieces of its path and query (Slack's, Discord's): a short route name (/hook) is none.
        pieces = re.split(r"[/?&=]", parts.path + "?" + parts.query)
        found.update({hook, parts.password or "", *(piece for piece in pieces if len(piece) >= TOKEN_LENGTH)})
    pushed = getattr(channel, "url", "") or ""  # Alertmanager's: only credentials in it are secret
    if pushed:
        found.update({pushed, urlsplit(pushed).password or ""})
    return found


def secret_values(settings: Any, channels: Iterable[Any] = ()) -> set[str]:
    """The secret settings (the rule /config redacts by) and the alert channels' secrets."""
    from ollama_server.api.companion.about import is_secret  # late: the api imports this module
    found = {getattr(settings, f.name) for f in fields(settings) if is_secret(f.name, getattr(settings, f.name))}
    for channel in channels:
        found |= _channel_secrets(channel)
    return {value for value in found if value}


# --- formatting ----------------------------------------------------------------------------------
def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _context_of(record: logging.LogRecord) -> tuple[Optional[str], dict[str, str]]:
    """The record's request id and extra: the request being served, else what the call passed in extra=."""
    context = _current.get()
    extra = context.extra() if context is not None else {}
    extra.update({key: str(getattr(record, key)) for key in EXTRA_KEYS if getattr(record, key, None) is not None})
    request_id = context.request_id if context is not None else getattr(record, "request_id", None)
    return request_id, extra


class JsonLineFormatter(logging.Formatter):
    """One JSON object a line: timestamp (UTC, ms), level, logger, request_id, message, extra, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        request_id, extra = _context_of(record)
        line: dict[str, Any] = {"timestamp": _timestamp(record), "level": record.levelname, "logger": record.name,
                                "request_id": request_id, "message": redact(record.getMessage()), "extra": extra}
        if record.exc_info:
            line["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            line["stack_info"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id]: message` for humans, secrets redacted as in JSON."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id, _ = _context_of(record)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return redact(super().format(record))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for a `log_format` setting value."""
    if log_format not in FORMATS:
        raise ValueError(f"log_format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    return JsonLineFormatter() if log_format == "json" else TextFormatter()


# --- handlers, level and format ------------------------------------------------------------------
_format = "json"  # the log_format of the settings applied last; handlers made later use it too


def level_number(level: str | int) -> int:
    """logging's number for a level name (DEBUG ... CRITICAL); ValueError naming an unknown one."""
    number = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def own(handler: logging.Handler, level: str | int) -> logging.Handler:
    """Format `handler`'s lines the configured way at `level`; later level and format changes reach it too."""
    handler.setFormatter(formatter(_format))
    handler.setLevel(level_number(level))
    setattr(handler, _OURS, True)
    return handler


def _owned() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, _OURS, False)]


# Libraries whose INFO lines are chatter: APScheduler logs two lines for every run of every job (the keep-alive
# check runs each second), llama.cpp dozens per model load (engine/llama_log.py). From WARNING, unless DEBUG.
CHATTY_LOGGERS = ("apscheduler", "llama.cpp")


def apply_log_level(level: str) -> None:
    """Log at `level` from now on: the root logger and every handler of ours (console, files)."""
    number = level_number(level)
    logging.getLogger().setLevel(number)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(number if number <= logging.DEBUG else max(number, logging.WARNING))
    for handler in _owned():
        handler.setLevel(number)


def configure_logging(settings: Any, channels: Iterable[Any] = ()) -> None:
    """Use `settings.log_format` for our handlers and redact its secrets (and the alert channels') from now on."""
    global _format
    chosen = formatter(settings.log_format)
    _format = settings.log_format
    for handler in _owned():
        handler.setFormatter(chosen)
    redact.set_values(secret_values(settings, channels))


def install_console_handler(settings: Any) -> bool:
    """Lines to stdout (gunicorn and journald collect it) at `log_level`, like logging.basicConfig: only when
    nobody else (pytest, an embedding program) has configured the root logger. True when installed."""
    global _format
    _format = settings.log_format
    root = logging.getLogger()
    if any(not getattr(h, _OURS, False) for h in root.handlers):
        return False
    if not any(getattr(h, "stream", None) is sys.stdout for h in _owned()):
        root.addHandler(own(logging.StreamHandler(sys.stdout), settings.log_level))
    apply_log_level(settings.log_level)
    return True
