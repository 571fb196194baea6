"""Log lines of the server, `chronosched up`, `chronosched worker` and the
SDK's Worker: text for people, JSON for machines (`--log-format text|json`,
docs/operations.md).

Both formats carry the same facts: a UTC timestamp (RFC 3339, milliseconds),
the level, the logger, an event name, the message, and the structured fields
a log call passes in `extra=`:

    log.info("worker %s connected", worker_id,
             extra={"event": "worker_connected", "worker_id": worker_id})

`event` is a short snake_case name that stays the same when the message's
wording changes; lines whose call names none (other libraries, rare messages)
carry `log`. The fields of a job or a worker are `namespace`, `dag_id`,
`job_id`, `attempt` and `worker_id`, shown first; other extras follow by name.
JSON lines are one object per line; text lines append the fields as
key=value.

It lives in the `chronosched` package (beside the generated chronosched.v1)
because both the server and the worker depend on that package and neither
may import the other: one copy of the formats for every process. The
server's and the worker's command lines configure logging with it once per
process; the worker's SDK adds its fallback output in
chronosched_worker/logs.py.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from enum import Enum
from pathlib import PurePath
from types import TracebackType
from typing import IO, Any

FORMATS = ("text", "json")
DEFAULT_FORMAT = "text"
# The fields that locate a line's job or worker, in the order lines show them.
FIELDS = ("namespace", "dag_id", "job_id", "attempt", "worker_id")
# The event of a line whose log call named none.
NO_EVENT = "log"

# Everything a LogRecord holds of its own; whatever else is in its __dict__
# came in through `extra=`.
_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def timestamp(created: float) -> str:
    """`2025-01-31T12:34:56.789Z`: RFC 3339 in UTC, milliseconds."""
    # time.gmtime over datetime: this runs for every line.
    seconds = int(created)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"
    )


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed (`event` excluded): the job
    and worker fields first, then the rest by name."""
    attributes = vars(record)
    # A set difference rather than a walk over every attribute: this runs
    # for every line.
    names = attributes.keys() - _RECORD_KEYS
    if not names:
        return {}
    names.discard("event")
    ordered = {key: attributes[key] for key in FIELDS if key in names}
    for key in sorted(names.difference(ordered)):
        if not key.startswith("_"):
            ordered[key] = attributes[key]
    return ordered


def event_of(record: logging.LogRecord) -> str:
    event = getattr(record, "event", None)
    return event if isinstance(event, str) and event else NO_EVENT


def _plain(value: Any) -> Any:
    """A JSON-ready form of a value json.dumps does not know."""
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return _plain(value.value) if isinstance(value.value, str | int | float) else value.name
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    return _text(value)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        # A log line must never fail on what a caller handed it.
        return f"<unprintable {type(value).__name__}>"


def _dumps(document: dict[str, Any]) -> str:
    # ASCII only: a line stays one line and valid whatever the stream's encoding.
    return json.dumps(document, default=_plain, ensure_ascii=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, message,
    the structured fields, and for an exception `exception` (type and
    message) and `traceback`."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": event_of(record),
            "message": record.getMessage(),
        }
        extra = fields_of(record)
        for key, value in extra.items():
            # A field never overwrites the line's own keys.
            document.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            document["exception"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            document["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["traceback"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        try:
            return _dumps(document)
        except (TypeError, ValueError, RecursionError):
            # A field json cannot take even through _plain (a cycle, a
            # mapping with odd keys): that field as text, the rest as is.
            for key in extra:
                if key in document:
                    try:
                        _dumps({key: document[key]})
                    except (TypeError, ValueError, RecursionError):
                        document[key] = _text(document[key])
            return _dumps(document)


_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


def _pair(key: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, list | tuple | set | frozenset):
        text = ",".join(map(_text, value))
    else:
        text = _text(value)
    if not text or _NEEDS_QUOTES.search(text):
        text = json.dumps(text, ensure_ascii=False)
    return f"{key}={text}"


class TextFormatter(logging.Formatter):
    """`TIMESTAMP LEVEL LOGGER: MESSAGE event=... key=value ...`, and a
    traceback on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = [_pair(key, value) for key, value in fields_of(record).items()]
        event = getattr(record, "event", None)
        if isinstance(event, str) and event:
            pairs.insert(0, _pair("event", event))
        if pairs:
            line += " " + " ".join(pairs)
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r} (use one of {', '.join(FORMATS)})")


def configure(level: str | int, log_format: str, stream: IO[str] | None = None) -> None:
    """Send this process's logging to `stream` (stderr) in `log_format`.

    Like logging.basicConfig, it does nothing when the root logger already
    has handlers (the application, or a test harness, set logging up).
    Warnings go through logging too, and in JSON an uncaught exception is
    logged as one line (`uncaught_exception`), so every line stays JSON.
    """
    chosen = formatter(log_format)
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(chosen)
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)
    if log_format == "json":
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None, thread: str | None = None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    extra: dict[str, Any] = {"event": "uncaught_exception"}
    if thread is not None:
        # Not `thread`: LogRecord has that attribute (the thread's id).
        extra["in_thread"] = thread
    logging.getLogger("chronosched").critical(
        "uncaught exception%s",
        f" in thread {thread}" if thread else "",
        exc_info=(kind, exc, tb),
        extra=extra,
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return  # what the default hook ignores too
    name = args.thread.name if args.thread is not None else "?"
    _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, thread=name)
