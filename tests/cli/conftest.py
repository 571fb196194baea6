"""Fixtures for the operator CLI's tests.

`server` is the client tests' in-process server (its own event loop in a
thread, tests/client/conftest.py). `cli` runs `chronosched ...` in this
process through `chronosched_server.cli.main` (fast; stdout is a pipe, so
output is the plain form); `chronosched` runs it as a process, for real
exit statuses, pipes and terminals. Jobs are of kind `manual`: no worker
runs them, the tests record their outcomes with CompleteJob / FailJob.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import pytest

from chronosched import Client
from chronosched_server.cli import main
from tests.client.conftest import Running, proxy, server
from tests.support.processes import clean_env

__all__ = ["NS", "Result", "proxy", "server"]

NS = "team-a"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(server: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`chronosched ARGS...` in this process against `server`."""
    monkeypatch.setenv("CHRONOSCHED_SERVER", server.target)
    monkeypatch.delenv("CHRONOSCHED_TOKEN", raising=False)

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def client(server: Running) -> Iterator[Client]:
    """A client of `server`, with namespace NS and a `manual` definition `step`."""
    with Client(server.target) as client:
        client.create_namespace(NS)
        client.create_definition(NS, "step", "manual")
        yield client


def command(*argv: str) -> list[str]:
    """`python -m chronosched_server ARGS...`: the console script's main()."""
    return [sys.executable, "-m", "chronosched_server", *argv]


def chronosched(target: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`chronosched ARGS...` as a process against `target`, stdout a pipe."""
    return subprocess.run(
        command(*argv),
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env({"CHRONOSCHED_SERVER": target}),
        timeout=60,
        check=False,
    )


class Lines:
    """A process's stdout read line by line in a thread, so a test can wait
    for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, within: float = 20.0) -> str:
        """The first line (from now on) containing `text`."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line with {text!r} within {within:g}s; seen: {self.seen}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without {text!r}; seen: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self, within: float = 20.0) -> list[str]:
        """Every line until the stream ends."""
        deadline = time.monotonic() + within
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty as exc:
                raise AssertionError(f"output did not end within {within:g}s; seen: {self.seen}") from exc
            if line is None:
                return self.seen
            self.seen.append(line)
