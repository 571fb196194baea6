"""The log line formats (chronosched/logs.py, shared by the server and the
worker): the keys every JSON line carries, structured fields,
exceptions, values json cannot take, the text form, process set-up, and
the SDK's fallback output that steps aside once an application configures
logging."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chronosched import logs
from chronosched_worker import logs as worker_logs

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("timestamp", "level", "logger", "event", "message")
RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def record(
    message: str = "job %s attempt %d started",
    args: tuple[Any, ...] = ("j-1", 2),
    *,
    level: int = logging.INFO,
    name: str = "chronosched.worker",
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    """A record as `logger.log(level, message, *args, extra=extra)` makes it."""
    made = logging.getLogger(name).makeRecord(
        name, level, "f.py", 10, message, args, exc_info, extra=extra or None
    )
    return made


def as_json(rec: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_json_line_has_the_required_keys_and_the_fields_given() -> None:
    rec = record(
        event="job_started", job_id="j-1", attempt=2, namespace="team-a", worker_id="w-1", kind="echo"
    )
    line = as_json(rec)
    assert line == {
        "timestamp": line["timestamp"],
        "level": "INFO",
        "logger": "chronosched.worker",
        "event": "job_started",
        "message": "job j-1 attempt 2 started",
        "namespace": "team-a",
        "job_id": "j-1",
        "attempt": 2,
        "worker_id": "w-1",
        "kind": "echo",
    }
    # The job and worker fields come first, in one order, then the others.
    assert list(line) == [*REQUIRED, "namespace", "job_id", "attempt", "worker_id", "kind"]


def test_the_timestamp_is_utc_rfc3339_with_milliseconds() -> None:
    rec = record()
    rec.created = datetime(2025, 3, 30, 1, 59, 58, 987_654, tzinfo=UTC).timestamp()
    stamp = as_json(rec)["timestamp"]
    assert stamp == "2025-03-30T01:59:58.987Z"
    assert RFC3339_MS_UTC.fullmatch(logs.timestamp(0.0)) and logs.timestamp(0.0) == "1970-01-01T00:00:00.000Z"


def test_a_line_without_an_event_name_says_log() -> None:
    assert as_json(record("plain", ()))["event"] == logs.NO_EVENT == "log"


def test_an_extra_never_replaces_the_lines_own_keys() -> None:
    extra = {"event": "e", "level": "not a level", "logger": "not a logger", "timestamp": "never"}
    rec = logging.getLogger("chronosched.x").makeRecord(
        "chronosched.x", logging.INFO, "f.py", 1, "m", (), None, extra=extra
    )
    line = as_json(rec)
    assert (line["level"], line["logger"], line["event"]) == ("INFO", "chronosched.x", "e")
    assert RFC3339_MS_UTC.fullmatch(line["timestamp"])


def test_an_exception_is_a_field_with_its_traceback() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        rec = record(
            "runner failed", (), level=logging.ERROR, exc_info=sys.exc_info(), event="job_runner_failed"
        )
    line = as_json(rec)
    assert line["exception"] == "ValueError: bad\nvalue"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert 'raise ValueError("bad\\nvalue")' in line["traceback"]
    assert line["message"] == "runner failed" and line["level"] == "ERROR"


def test_values_json_cannot_take_still_make_a_line() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    loop: list[Any] = []
    loop.append(loop)
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = uuid.UUID("01890000-0000-7000-8000-000000000001")
    line = as_json(
        record(
            event="e",
            odd=Odd(),
            broken=Broken(),
            when=when,
            took=timedelta(seconds=1.5),
            job_id=job,
            tags={"b", "a"},
            raw=b"\xffok",
            path=Path("/tmp/x"),
            cycle=loop,
            tuple_keys={(1, 2): "v"},
        )
    )
    assert line["odd"] == "odd!"
    assert line["broken"] == "<unprintable Broken>"
    assert (line["when"], line["took"], line["job_id"]) == ("2025-01-02T03:04:05+00:00", 1.5, str(job))
    assert (line["tags"], line["raw"], line["path"]) == (["a", "b"], "\\xffok", "/tmp/x")
    # Only the fields json refuses outright turn into text; the line survives.
    assert line["cycle"] == "[[...]]"
    assert line["tuple_keys"] == "{(1, 2): 'v'}"


def test_text_lines_append_the_fields_as_key_value() -> None:
    rec = record(
        event="job_failed", job_id="j-1", attempt=2, error="exit 3: no such file", empty="", kinds=["a", "b"]
    )
    rec.created = datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC).timestamp()
    assert logs.TextFormatter().format(rec) == (
        "2025-01-02T03:04:05.006Z INFO chronosched.worker: job j-1 attempt 2 started "
        'event=job_failed job_id=j-1 attempt=2 empty="" error="exit 3: no such file" kinds=a,b'
    )
    # Without fields it is the plain line.
    assert logs.TextFormatter().format(record("plain", ())).endswith("INFO chronosched.worker: plain")


def test_text_lines_put_a_traceback_below() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        rec = record("oops", (), level=logging.ERROR, exc_info=sys.exc_info(), event="e")
    first, *rest = logs.TextFormatter().format(rec).splitlines()
    assert first.endswith("ERROR chronosched.worker: oops event=e")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "KeyError: 'k'"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        logs.formatter("xml")


# --- the worker's names ----------------------------------------------------


def test_the_worker_uses_the_one_copy_of_the_formats() -> None:
    # chronosched_worker.logs re-exports the shared formats; it keeps no
    # copy of its own to drift.
    for name in ("FORMATS", "DEFAULT_FORMAT", "FIELDS", "configure", "formatter", "TextFormatter"):
        assert getattr(worker_logs, name) is getattr(logs, name), name


# --- a process's set-up ----------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_configure_json_makes_every_line_of_the_process_json() -> None:
    done = _python(
        "import logging, warnings\n"
        "from chronosched import logs\n"
        "logs.configure(logging.INFO, 'json')\n"
        "logging.getLogger('chronosched.x').info('hello %s', 'you', extra={'event': 'hi', 'job_id': 'j'})\n"
        "logging.getLogger('chronosched.x').debug('not shown')\n"
        "warnings.warn('careful')\n"
        "import threading\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='side')\n"
        "t.start(); t.join()\n"
        "raise RuntimeError('boom')\n"
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("hi", "INFO"),
        ("log", "WARNING"),
        ("uncaught_exception", "CRITICAL"),
        ("uncaught_exception", "CRITICAL"),
    ]
    assert lines[0]["job_id"] == "j" and lines[0]["message"] == "hello you"
    assert lines[1]["logger"] == "py.warnings" and "careful" in lines[1]["message"]
    assert lines[2]["exception"] == "ZeroDivisionError: division by zero" and lines[2]["in_thread"] == "side"
    assert lines[3]["exception"] == "RuntimeError: boom" and "Traceback" in lines[3]["traceback"]
    for line in lines:
        assert set(REQUIRED) <= line.keys() and RFC3339_MS_UTC.fullmatch(line["timestamp"])


def test_configure_leaves_a_configured_process_alone() -> None:
    done = _python(
        "import logging\n"
        "from chronosched_worker import logs\n"
        "logging.basicConfig(format='APP %(message)s', level=logging.INFO)\n"
        "logs.configure('INFO', 'json')\n"
        "logging.getLogger('x').info('once', extra={'event': 'e'})\n"
    )
    assert (done.returncode, done.stderr) == (0, "APP once\n")


# --- the SDK's fallback output ---------------------------------------------


def lone_logger() -> logging.Logger:
    """A logger out of reach of pytest's root handlers, as in an application
    that configured no logging. Made in the test itself: pytest also hands
    its capture handler to the non-propagating loggers that exist when a
    test phase begins."""
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    return logger


def test_fallback_shows_info_lines_until_the_application_configures_logging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = lone_logger()
    worker_logs.default_output(logger)
    worker_logs.default_output(logger)  # idempotent: one handler
    assert logger.level == logging.INFO and len(logger.handlers) == 1
    logger.info("job %s started", "a", extra={"event": "job_started", "job_id": "a"})
    err = capsys.readouterr().err
    assert re.fullmatch(r"\S+Z INFO test\.logs\.\w+: job a started event=job_started job_id=a\n", err), err

    # The application sets up its own handler: each line reaches it once,
    # and its levels decide again.
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger.addHandler(Collect())
    logger.warning("lost", extra={"event": "worker_disconnected"})
    assert capsys.readouterr().err == ""
    assert [r.getMessage() for r in seen] == ["lost"]
    assert logger.level == logging.NOTSET


def test_no_fallback_when_the_application_already_configured_logging() -> None:
    logger = lone_logger()
    logger.addHandler(logging.NullHandler())
    worker_logs.default_output(logger)
    assert logger.level == logging.NOTSET
    assert [type(h) for h in logger.handlers] == [logging.NullHandler]


def test_fallback_keeps_a_level_the_application_chose() -> None:
    logger = lone_logger()
    logger.setLevel(logging.WARNING)
    worker_logs.default_output(logger)
    assert logger.level == logging.WARNING


# --- the flags ----------------------------------------------------------------


def test_server_and_up_take_the_format_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chronosched_server import cli

    args = cli.build_parser().parse_args(
        ["server", "--database-url", "postgresql://x", "--log-format", "JSON"]
    )
    assert args.log_format == "json"
    assert cli.build_parser().parse_args(["up"]).log_format == "text"
    monkeypatch.setenv("CHRONOSCHED_LOG_FORMAT", "json")
    assert cli.build_parser().parse_args(["up"]).log_format == "json"
    assert cli.main(["server", "--log-format", "xml"]) == 2
    assert "argument --log-format: invalid choice: 'xml'" in capsys.readouterr().err


def test_the_worker_takes_the_format_from_the_flag_or_the_environment() -> None:
    from chronosched_worker import cli

    assert cli.build_parser({}).parse_args([]).log_format == "text"
    assert cli.build_parser({"CHRONOSCHED_LOG_FORMAT": "json"}).parse_args([]).log_format == "json"
    assert cli.build_parser({}).parse_args(["--log-format", "json"]).log_format == "json"


def test_up_hands_its_format_to_the_server_and_workers_it_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from chronosched_server.local import up as local_up

    started: list[list[str]] = []

    class Recorded:
        pid = 4242

        def __init__(self, args: list[str], **_: Any) -> None:
            started.append(args)

    monkeypatch.setattr("chronosched_server.local.up.subprocess.Popen", Recorded)
    options = local_up.UpOptions(
        data_dir=tmp_path,
        grpc_port=1,
        http_port=2,
        admin_port=3,
        database_url=None,
        workers=1,
        log_level="INFO",
    )
    assert options.log_format == "text"
    supervisor = local_up._Up(**{**vars(options), "log_format": "json"})
    supervisor.run_dir.mkdir(parents=True)
    supervisor._start_server("postgresql://x")
    supervisor._spawn_worker(0)
    server, worker = started
    assert server[server.index("--log-format") + 1] == "json" and "server" in server
    assert worker[worker.index("--log-format") + 1] == "json" and "chronosched_worker" in worker
