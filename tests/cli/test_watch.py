"""`dag watch` and `dag submit --watch` as processes: piped, one line per
change and the exit status of the DAG's outcome; on a terminal (a
pseudo-terminal), the redrawn view with its progress bar and state counts.
The test moves the DAG along by completing or failing its manual jobs once
the watcher has shown the state before, so every change is seen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronosched import Client, DagRun
from tests.cli.conftest import NS, Lines, command
from tests.client.conftest import Running
from tests.support.processes import clean_env

pytestmark = pytest.mark.timeout(60)


def _chain(client: Client, name: str = "etl") -> DagRun:
    dag = client.dag(NS, name)
    dag.job("a", "step") >> dag.job("b", "step")
    return dag.submit()


def _job_ids(run: DagRun) -> dict[str, str]:
    return {key: job.job_id for key, job in run.jobs().items()}


def _watch(target: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*argv, "--interval", "0.05"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env({"CHRONOSCHED_SERVER": target}),
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _stamp(line: str) -> str:
    """A line without its leading HH:MM:SS."""
    assert re.match(r"\d\d:\d\d:\d\d ", line), line
    return line[9:]


def test_piped_watch_prints_a_line_per_change_and_exits_0_on_success(
    server: Running, client: Client, processes: list[subprocess.Popen[str]]
) -> None:
    run = _chain(client)
    ids = _job_ids(run)
    proc = _watch(server.target, "dag", "watch", NS, run.dag_id)
    processes.append(proc)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    first = lines.wait_for("finished")
    assert _stamp(first) == f"dag etl ({run.dag_id}): RUNNING, 0/2 finished (1 PENDING, 1 READY)"
    client.complete_job(ids["a"])
    lines.wait_for("a: READY -> SUCCEEDED")
    client.complete_job(ids["b"], {"rows": 1})
    rest = [_stamp(line) for line in lines.rest()]
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    # b became READY in the transaction that completed a, so the look that
    # saw a succeed saw b ready; b was completed only after that.
    assert rest[1:-1] == [
        "[1/2] a: READY -> SUCCEEDED",
        "[1/2] b: PENDING -> READY",
        "[2/2] b: READY -> SUCCEEDED",
        f"dag {run.dag_id}: RUNNING -> SUCCEEDED",
    ]
    assert re.fullmatch(
        rf"dag etl \({run.dag_id}\): SUCCEEDED, 2/2 finished \(2 SUCCEEDED\) in \d+\.\ds", rest[-1]
    )


def test_piped_watch_exits_1_when_the_dag_fails(
    server: Running, client: Client, processes: list[subprocess.Popen[str]]
) -> None:
    run = _chain(client)
    ids = _job_ids(run)
    proc = _watch(server.target, "dag", "watch", NS, run.dag_id)
    processes.append(proc)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    lines.wait_for("finished")
    client.fail_job(ids["a"], "disk full\nmore detail", non_retryable=True)
    rest = [_stamp(line) for line in lines.rest()]
    assert proc.wait(20) == 1
    assert "[1/2] a: READY -> FAILED: disk full" in rest
    assert "[2/2] b: PENDING -> SKIPPED" in rest
    assert rest[-1].startswith(f"dag etl ({run.dag_id}): FAILED, 2/2 finished (1 FAILED, 1 SKIPPED) in ")


def test_submit_watch_follows_the_new_dag_and_json_waits_quietly(
    server: Running, client: Client, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "dag.yaml"
    path.write_text("name: one\njobs:\n  - {key: only, definition: step}\n")
    proc = _watch(server.target, "dag", "submit", NS, "-f", str(path), "--watch")
    processes.append(proc)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    created = lines.wait_for("created")
    dag_id = created.split("(", 1)[1].split(")", 1)[0]
    assert created == f"dag one ({dag_id}) created: 1 jobs, RUNNING"
    lines.wait_for("0/1 finished")

    # -o json prints nothing until the DAG settles, then the DAG.
    quiet = _watch(server.target, "dag", "watch", NS, dag_id, "-o", "json")
    processes.append(quiet)
    [job] = client.list_dag_jobs(NS, dag_id)
    client.cancel_dag(NS, dag_id)
    assert proc.wait(20) == 1  # cancelled
    assert _stamp(lines.rest()[-1]).startswith(
        f"dag one ({dag_id}): CANCELLED, 1/1 finished (1 CANCELLED) in "
    )
    out, _ = quiet.communicate(timeout=20)
    assert quiet.returncode == 1
    assert '"state": "STATE_CANCELLED"' in out and job.key == "only"


# --- on a terminal -----------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A process on a pseudo-terminal (100x30 unless told), its output collected."""

    def __init__(self, argv: list[str], env: dict[str, str], columns: int = 100) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
        # COLUMNS and LINES would override the terminal's size (pytest-xdist's
        # workers set them to 80x24): the process reads the size it is given.
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.master = master
        self.raw = b""

    @property
    def text(self) -> str:
        """Everything written so far, without escape sequences."""
        return _ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        self.raw += data
        return bool(data)

    def wait_for(self, text: str, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.text:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen within {within:g}s:\n{self.text}")
            if not self._read(0.1) and text not in self.text:
                raise AssertionError(f"the process ended without showing {text!r}:\n{self.text}")

    def finish(self, within: float = 20.0) -> int:
        deadline = time.monotonic() + within
        while self._read(0.1) and time.monotonic() < deadline:
            pass
        code = self.proc.wait(max(deadline - time.monotonic(), 1))
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_on_a_terminal_the_view_is_redrawn_and_the_exit_status_is_the_outcome(
    server: Running, client: Client, outcome: str
) -> None:
    run = _chain(client, "live")
    ids = _job_ids(run)
    env = clean_env({"CHRONOSCHED_SERVER": server.target, "TERM": "xterm-256color"})
    terminal = Terminal(command("dag", "watch", NS, run.dag_id, "--interval", "0.05"), env)
    try:
        terminal.wait_for("0/2 finished (0%)")
        terminal.wait_for("READY 1")
        assert "━" in terminal.text  # the progress bar
        assert "PENDING 1" in terminal.text
        client.complete_job(ids["a"])
        terminal.wait_for("1/2 finished (50%)")
        terminal.wait_for("SUCCEEDED 1")
        if outcome == "succeed":
            client.complete_job(ids["b"])
        else:
            client.fail_job(ids["b"], "boom", non_retryable=True)
        code = terminal.finish()
    finally:
        terminal.kill()
    screen = terminal.text
    assert "2/2 finished (100%)" in screen
    # Redrawn in place: rich moves the cursor up over the previous view.
    assert b"\x1b[1A" in terminal.raw and b"\x1b[2K" in terminal.raw
    if outcome == "succeed":
        assert code == 0
        assert "SUCCEEDED 2" in screen
        assert re.search(
            rf"dag live \({run.dag_id}\): SUCCEEDED, 2/2 finished \(2 SUCCEEDED\) in \S+\s*$", screen
        )
    else:
        assert code == 1
        assert "SUCCEEDED 1" in screen and "FAILED 1" in screen
        assert f"dag live ({run.dag_id}): FAILED, 2/2 finished (1 SUCCEEDED, 1 FAILED) in " in screen


def test_on_a_narrow_terminal_tables_keep_whole_ids(server: Running, client: Client) -> None:
    run = _chain(client, "a-dag-with-a-long-name")
    env = clean_env({"CHRONOSCHED_SERVER": server.target, "TERM": "xterm-256color"})
    terminal = Terminal(command("dag", "list", NS), env, columns=40)
    try:
        assert terminal.finish() == 0
    finally:
        terminal.kill()
    assert run.dag_id in terminal.text and "a-dag-with-a-long-name" in terminal.text
    assert "\x1b[" in terminal.raw.decode()  # coloured: it knew it was on a terminal
