"""`--retention` (server and up) and `--retention-interval` (server): what
they accept, what reaches the Config or the server `up` starts, and the
error that names the flag."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronosched_server.cli import build_parser, main, server_config
from chronosched_server.config import DEFAULT_RETENTION, Config, format_duration, parse_duration


def config_of(*flags: str) -> Config:
    args = build_parser().parse_args(["server", "--database-url", "postgresql:///x", *flags])
    return server_config(args)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("3600s", timedelta(hours=1)),
        ("0", timedelta(0)),
        ("0d", timedelta(0)),
    ],
)
def test_retention_reaches_the_config(text: str, value: timedelta) -> None:
    assert config_of("--retention", text).retention == value


def test_retention_defaults_to_7_days_and_the_interval_to_5_minutes() -> None:
    config = config_of()
    assert config.retention == DEFAULT_RETENTION == timedelta(days=7)
    assert config.retention_interval_s == Config.retention_interval_s == 300.0


def test_the_environment_sets_retention_and_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOSCHED_RETENTION", "36h")
    monkeypatch.setenv("CHRONOSCHED_RETENTION_INTERVAL", "90s")
    config = config_of()
    assert (config.retention, config.retention_interval_s) == (timedelta(hours=36), 90.0)
    # A flag beats the environment.
    assert config_of("--retention", "0").retention == timedelta(0)


def test_up_takes_retention_too() -> None:
    assert build_parser().parse_args(["up", "--retention", "12h"]).retention == timedelta(hours=12)
    assert build_parser().parse_args(["up"]).retention == DEFAULT_RETENTION


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("server", "--retention", "7"),
        ("server", "--retention", "7x"),
        ("server", "--retention", "-1d"),
        ("server", "--retention", "1.5h"),
        ("server", "--retention", "1h30m"),
        ("server", "--retention", ""),
        ("up", "--retention", "week"),
        ("server", "--retention", "36501d"),
        ("server", "--retention", "99999999999999999999d"),
        ("server", "--retention-interval", "0"),
        ("server", "--retention-interval", "5"),
    ],
)
def test_a_bad_value_is_a_usage_error_naming_the_flag(
    command: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--flag=value`: a value such as -1d would otherwise read as a flag.
    assert main([command, "--database-url", "postgresql:///x", f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"chronosched {command}: error: argument {flag}: " in err
    assert repr(value) in err


def test_a_bad_environment_value_names_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHRONOSCHED_RETENTION", "forever")
    assert main(["server", "--database-url", "postgresql:///x"]) == 2
    assert "argument --retention: not a duration: 'forever'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value",
    [timedelta(0), timedelta(days=7), timedelta(hours=36), timedelta(minutes=90), timedelta(seconds=61)],
)
def test_what_up_hands_the_server_reads_back_the_same(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
