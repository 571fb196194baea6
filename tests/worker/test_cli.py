"""`chronosched worker` / `python -m chronosched_worker`: flags, environment
defaults, usage errors, and a real worker process draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from chronosched_worker.cli import build_worker
from chronosched_worker.runner import struct_to_dict
from tests.support.processes import pid_alive
from tests.support.worker import read_pid
from tests.worker.fake_server import FakeServer, assignment, ref

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def test_flags_build_the_worker() -> None:
    worker = build_worker(
        [
            "--server",
            "sched:7000",
            "--namespace",
            "team-a",
            "--namespace",
            "team-b,team-c",
            "--kinds",
            "http",
            "--concurrency",
            "4",
            "--grace",
            "2.5",
            "--worker-id",
            "w-7",
        ],
        env={},
    )
    assert (worker.server, worker.worker_id, worker.namespaces) == (
        "sched:7000",
        "w-7",
        ("team-a", "team-b", "team-c"),
    )
    assert (worker.all_namespaces, worker.kinds, worker.concurrency, worker.grace_s) == (
        False,
        ("http",),
        4,
        2.5,
    )


def test_defaults_serve_every_builtin_kind() -> None:
    worker = build_worker(["--all-namespaces"], env={})
    assert (worker.server, worker.all_namespaces, worker.namespaces) == ("127.0.0.1:50051", True, ())
    assert (worker.kinds, worker.concurrency, worker.grace_s) == (("command", "http"), 16, 30.0)
    assert worker.prefetch == "auto"


def test_prefetch_is_auto_or_a_count() -> None:
    assert build_worker(["--all-namespaces", "--prefetch", "4"], env={}).prefetch == 4
    assert build_worker(["--all-namespaces", "--prefetch", "0"], env={}).prefetch == 0
    assert build_worker(["--all-namespaces", "--prefetch", "auto"], env={}).prefetch == "auto"
    from_env = build_worker(["--all-namespaces"], env={"CHRONOSCHED_WORKER_PREFETCH": "2"})
    assert from_env.prefetch == 2


def test_environment_supplies_defaults_and_flags_win() -> None:
    env = {
        "CHRONOSCHED_SERVER": "envhost:1",
        "CHRONOSCHED_WORKER_NAMESPACES": "ns-1, ns-2",
        "CHRONOSCHED_WORKER_KINDS": "command",
        "CHRONOSCHED_WORKER_CONCURRENCY": "3",
        "CHRONOSCHED_WORKER_GRACE": "7",
        "CHRONOSCHED_WORKER_ID": "env-worker",
    }
    worker = build_worker([], env=env)
    assert (worker.server, worker.namespaces, worker.kinds) == ("envhost:1", ("ns-1", "ns-2"), ("command",))
    assert (worker.concurrency, worker.grace_s, worker.worker_id) == (3, 7.0, "env-worker")
    flagged = build_worker(["--all-namespaces", "--concurrency", "5"], env=env)
    assert (flagged.all_namespaces, flagged.namespaces, flagged.concurrency) == (True, (), 5)
    everywhere = build_worker([], env={"CHRONOSCHED_WORKER_ALL_NAMESPACES": "true"})
    assert everywhere.all_namespaces


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "one of --namespace NS or --all-namespaces is required"),
        (
            ["--namespace", "a", "--all-namespaces"],
            "argument --all-namespaces: not allowed with argument --namespace",
        ),
        (
            ["--all-namespaces", "--kinds", "http,ftp"],
            "unknown kind(s) in --kinds: ftp (built-in: command, http)",
        ),
        (["--namespace", "Not_Valid"], "invalid namespace id 'Not_Valid'"),
        (["--all-namespaces", "--concurrency", "0"], "argument --concurrency: must be at least 1: 0"),
        (["--all-namespaces", "--concurrency", "1001"], "concurrency must be 1 to 1000, got 1001"),
        (["--all-namespaces", "--grace", "soon"], "argument --grace: not a number of seconds: 'soon'"),
        (
            ["--all-namespaces", "--prefetch", "often"],
            "argument --prefetch: not 'auto' or an integer of at least 0: 'often'",
        ),
        (
            ["--all-namespaces", "--prefetch", "-1"],
            "argument --prefetch: not 'auto' or an integer of at least 0: '-1'",
        ),
        (
            ["--all-namespaces", "--concurrency", "990", "--prefetch", "11"],
            "prefetch must be 'auto' or 0 to 10",
        ),
        (["--all-namespaces", "--worker-id", "bad id"], "invalid worker_id 'bad id'"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_worker(argv, env={})
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


async def start_process(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chronosched_worker", *args, env=env, stderr=asyncio.subprocess.PIPE
    )


async def test_worker_process_runs_a_command_job_and_drains_on_sigterm(fake: FakeServer) -> None:
    proc = await start_process(
        "--server", fake.address, "--namespace", "team-a", "--kinds", "command", "--worker-id", "p-1"
    )
    try:
        # The first stream arrives once the worker runs, signal handlers included.
        stream = await fake.next_stream(within=20)
        sub = await stream.expect("subscribe")
        assert (sub.worker_id, list(sub.namespaces), list(sub.kinds)) == ("p-1", ["team-a"], ["command"])
        stream.push(assignment("a", kind="command", payload={"argv": ["echo", "hi"]}))
        result = await stream.expect("result")
        assert (result.job, result.success) == (ref("a"), True)
        assert struct_to_dict(result.result) == {"exit_code": 0, "stdout_tail": "hi\n", "stderr_tail": ""}
        stream.ack("a")
        proc.send_signal(signal.SIGTERM)
        assert (await stream.expect("slots")).slots == 0
        await stream.expect_close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = (await proc.stderr.read()).decode()
    assert "job a attempt 1 started (kind command)" in log
    assert "job a attempt 1 succeeded in" in log


async def test_second_signal_abandons_running_jobs(fake: FakeServer, tmp_path: Path) -> None:
    proc = await start_process("--server", fake.address, "--all-namespaces", "--grace", "60")
    try:
        stream = await fake.next_stream(within=20)
        await stream.expect("subscribe")
        script = f"echo $$ > {tmp_path}/pid; exec sleep 60"
        stream.push(assignment("a", kind="command", payload={"argv": ["sh", "-c", script]}))
        pid = await read_pid(tmp_path / "pid")
        proc.send_signal(signal.SIGTERM)
        await stream.expect("slots")
        proc.send_signal(signal.SIGINT)  # a second signal: do not wait out the 60 s grace
        await stream.expect_close(within=15)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "result" not in stream.kinds_received()
    assert not pid_alive(pid)


async def test_worker_package_imports_no_server_code() -> None:
    # Workers ship without the server: only the client package, grpc and the stdlib.
    code = (
        "import sys, chronosched_worker, chronosched_worker.cli, chronosched_worker.kinds.http\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('chronosched_server', 'psycopg'))\n"
        "print(','.join(bad))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert (proc.returncode, out.decode().strip()) == (0, "")
