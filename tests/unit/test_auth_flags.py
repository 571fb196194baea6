"""The auth settings of `chronosched server` and `chronosched up`: tokens
required by default, CHRONOSCHED_ADMIN_TOKEN from the environment only, and
the contradictions refused as usage errors."""

from __future__ import annotations

import pytest

from chronosched_server.cli import build_parser, main, server_config
from chronosched_server.config import Config

pytestmark = pytest.mark.timeout(30)

TOKEN = "a-long-enough-admin-token-0123456789"


def config_of(*flags: str) -> Config:
    args = build_parser().parse_args(["server", "--database-url", "postgresql:///x", *flags])
    return server_config(args)


def test_tokens_are_required_unless_insecure_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHRONOSCHED_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("CHRONOSCHED_INSECURE_NO_AUTH", raising=False)
    assert (config_of().require_tokens, config_of().admin_token) == (True, None)
    assert config_of("--insecure-no-auth").require_tokens is False
    monkeypatch.setenv("CHRONOSCHED_INSECURE_NO_AUTH", "1")
    assert config_of().require_tokens is False


def test_the_admin_token_comes_from_the_environment_and_stays_out_of_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHRONOSCHED_ADMIN_TOKEN", TOKEN)
    config = config_of()
    assert config.admin_token == TOKEN and TOKEN not in repr(config)
    assert "--admin-token" not in build_parser().format_help()


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"CHRONOSCHED_ADMIN_TOKEN": "short"}, [], "at least 32 characters"),
        ({"CHRONOSCHED_ADMIN_TOKEN": TOKEN}, ["--insecure-no-auth"], "choose one"),
    ],
)
def test_contradictions_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    flags: list[str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["server", "--database-url", "postgresql:///x", *flags]) == 2
    assert message in capsys.readouterr().err


def test_up_takes_auth_and_a_long_enough_admin_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.setenv("CHRONOSCHED_ADMIN_TOKEN", "short")
    assert main(["up", "--auth", "--data-dir", str(tmp_path)]) == 2
    assert "at least 32 characters" in capsys.readouterr().err
    args = build_parser().parse_args(["up", "--auth"])
    assert args.auth is True and args.admin_token == "short"
    monkeypatch.delenv("CHRONOSCHED_ADMIN_TOKEN")
    assert build_parser().parse_args(["up"]).auth is False
