"""`chronosched server` flags -> the server's Config."""

from __future__ import annotations

import pytest

from chronosched_server.cli import build_parser, server_config
from chronosched_server.config import Config


def config_of(*flags: str) -> Config:
    args = build_parser().parse_args(["server", "--database-url", "postgresql:///x", *flags])
    return server_config(args)


def test_the_scheduler_runs_unless_switched_off() -> None:
    assert config_of().scheduler_enabled is True
    assert config_of("--no-scheduler").scheduler_enabled is False


@pytest.mark.parametrize(("value", "enabled"), [("1", False), ("true", False), ("0", True), ("", True)])
def test_environment_switches_the_scheduler_off(
    monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool
) -> None:
    monkeypatch.setenv("CHRONOSCHED_NO_SCHEDULER", value)
    assert config_of().scheduler_enabled is enabled


def test_lease_and_reap_flags_reach_the_config() -> None:
    config = config_of("--lease-seconds", "7.5", "--reap-interval-seconds", "0.25")
    assert (config.lease_s, config.reap_interval_s) == (7.5, 0.25)
