"""The `chronosched` command: `server` flags -> the server's Config,
--version, plain `chronosched`, every subcommand's help, and `up` refusing
to start beside a running one (a locked data directory, busy ports)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronosched_server.cli import build_parser, main, server_config
from chronosched_server.config import Config
from chronosched_server.local import up as local_up
from chronosched_worker import cli as worker_cli
from tests.support.processes import clean_env, free_port


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


# --- the command itself: --version, plain `chronosched`, help -------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _main(*argv: str) -> int:
    # `chronosched worker ...` hands its arguments to the worker's parser,
    # which exits (SystemExit) instead of returning like main() does.
    try:
        return main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2


def _chronosched(*argv: str) -> subprocess.CompletedProcess[str]:
    """The command as a process (`python -m chronosched_server` runs the same
    main() as the console script), for real exit statuses."""
    return subprocess.run(
        [sys.executable, "-m", "chronosched_server", *argv],
        capture_output=True,
        text=True,
        env=clean_env({"COLUMNS": "1000"}),
        timeout=60,
        check=False,
    )


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main("--version") == 0
    out, err = capsys.readouterr()
    assert out == f"chronosched {importlib.metadata.version('chronosched')}\n"
    assert err == ""


def test_version_exits_0_as_a_process() -> None:
    result = _chronosched("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"chronosched {importlib.metadata.version('chronosched')}\n"


def test_plain_chronosched_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main() == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: chronosched ")
    assert "a namespaced, DAG-driven job scheduler" in out
    for name in _subcommands():
        assert f"\n    {name} " in out, name
    assert err == ""


def test_plain_chronosched_exits_0_as_a_process() -> None:
    result = _chronosched()
    assert result.returncode == 0, result.stderr
    assert result.stdout == _chronosched("--help").stdout
    assert result.stderr == ""


# The operator commands (ns ... prune) come from chronosched.cli (tests/cli/).
SUBCOMMANDS = [
    "up",
    "server",
    "worker",
    "migrate",
    "ns",
    "def",
    "dag",
    "jobs",
    "workers",
    "tick",
    "schedules",
    "prune",
    "token",
]


def test_every_subcommand_is_tested_for_a_description() -> None:
    assert sorted(_subcommands()) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommands_help_has_a_description(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `worker --help` is the worker's own parser (main() hands it over).
    parser = worker_cli.build_parser({}) if command == "worker" else _subcommands()[command]
    description = parser.description or ""
    assert len(description.split()) >= 5 and description.endswith("."), description
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: the description on one line
    assert _main(command, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: chronosched {command} ")
    assert f"\n\n{description}\n\n" in out


def test_worker_help_exits_0_as_a_process() -> None:
    result = _chronosched("worker", "--help")
    assert result.returncode == 0, result.stderr
    description = worker_cli.build_parser({}).description
    assert description and description in result.stdout


# --- `chronosched up` refusing to start next to a running one -----------------


def _up(data_dir: Path, grpc: int, http: int, admin: int) -> int:
    return main(
        [
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-port",
            str(grpc),
            "--http-port",
            str(http),
            "--admin-port",
            str(admin),
            "--workers",
            "0",
        ]
    )


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A port something other than chronosched listens on (every interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock


def test_a_busy_port_is_named_before_anything_starts(
    tmp_path: Path, listening: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    busy: int = listening.getsockname()[1]
    assert _up(tmp_path / "data", free_port(), busy, free_port()) == 1
    err = capsys.readouterr().err
    message = f"port {busy} (--http-port) is already in use (is chronosched already running?)"
    assert f"chronosched up: error: {message}\n" in err
    assert "chronosched is already running" not in err  # nothing says the holder is chronosched
    assert not (tmp_path / "data" / "pg").exists()  # PostgreSQL was not even initialised


def test_every_busy_port_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(3):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            ports.append(sock.getsockname()[1])
        grpc, http, admin = ports
        assert _up(tmp_path / "data", grpc, http, admin) == 1
    assert (
        f"chronosched up: error: ports {grpc} (--grpc-port), {http} (--http-port) and {admin} (--admin-port)"
        " are already in use (is chronosched already running?)\n" in capsys.readouterr().err
    )


@pytest.fixture
def other_process() -> Iterator[int]:
    """The pid of a live process other than this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _hold_lock(data_dir: Path, state: dict[str, object] | None) -> int:
    """Take `up`'s lock on data_dir as a running `up` would, with its state file."""
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True)
    fd = os.open(run_dir / local_up.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if state is not None:
        (run_dir / local_up.STATE_FILE).write_text(json.dumps(state))
    return fd


def test_a_locked_data_dir_names_the_running_up_and_its_addresses(
    tmp_path: Path, other_process: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = (tmp_path / "data").resolve()
    state = {
        "supervisor_pid": other_process,
        "data_dir": str(data_dir),
        "ready": True,
        "rest_url": "http://127.0.0.1:18080/api/v1",
        "grpc_target": "127.0.0.1:15051",
    }
    fd = _hold_lock(data_dir, state)
    try:
        # The ports do not matter: the data directory is checked first.
        assert _up(data_dir, 1, 2, 3) == 1
    finally:
        os.close(fd)
    assert capsys.readouterr().err == (
        f"chronosched up: error: chronosched is already running at {data_dir}: "
        f"another `chronosched up` (pid {other_process}) is already using it\n"
        "  REST    http://127.0.0.1:18080/api/v1\n"
        "  gRPC    127.0.0.1:15051\n"
    )
    # The running one's state file is left alone.
    assert json.loads((data_dir / "run" / local_up.STATE_FILE).read_text()) == state


def test_a_locked_data_dir_of_an_up_still_starting(
    tmp_path: Path, other_process: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = (tmp_path / "data").resolve()
    fd = _hold_lock(data_dir, {"supervisor_pid": other_process, "data_dir": str(data_dir)})
    try:
        assert _up(data_dir, 1, 2, 3) == 1
    finally:
        os.close(fd)
    assert capsys.readouterr().err == (
        f"chronosched up: error: chronosched is already running at {data_dir}: "
        f"another `chronosched up` (pid {other_process}, still starting) is already using it\n"
    )


@pytest.mark.parametrize("stale", [None, "dead pid"])
def test_a_locked_data_dir_without_a_trustworthy_state_file(
    tmp_path: Path, stale: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    # No state file yet, or one an `up` that died unclean left behind (its
    # pid no longer runs): only the data directory is named.
    data_dir = (tmp_path / "data").resolve()
    state: dict[str, object] | None = None
    if stale is not None:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        state = {"supervisor_pid": dead.pid, "ready": True, "rest_url": "http://127.0.0.1:1/api/v1"}
    fd = _hold_lock(data_dir, state)
    try:
        assert _up(data_dir, 1, 2, 3) == 1
    finally:
        os.close(fd)
    assert capsys.readouterr().err == (
        f"chronosched up: error: chronosched is already running at {data_dir}: "
        "another `chronosched up` is already using it\n"
    )
