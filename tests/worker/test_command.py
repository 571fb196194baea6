"""The `command` kind against real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chronosched_worker import Outcome, execute
from chronosched_worker.kinds.command import DEFAULT_KILL_GRACE_S, TAIL_BYTES, CommandKind, Tail, job_env
from chronosched_worker.reaper import reap_session
from tests.support.processes import pid_alive
from tests.support.waiting import eventually
from tests.support.worker import make_ctx, read_pid
from tests.worker.fake_server import FakeServer, assignment

pytestmark = pytest.mark.timeout(30)

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


async def run(
    payload: dict[str, Any], kind: CommandKind | None = None, timeout_s: float | None = None
) -> Outcome:
    return await execute(kind or CommandKind(), make_ctx(payload, kind="command"), timeout_s=timeout_s)


async def test_exit_zero_succeeds_with_output_tails() -> None:
    code = "import sys; print('hello'); print('warn', file=sys.stderr)"
    assert await run({"argv": [PY, "-c", code]}) == Outcome(
        success=True, result={"exit_code": 0, "stdout_tail": "hello\n", "stderr_tail": "warn\n"}
    )


async def test_non_zero_exit_fails_with_the_stderr_tail() -> None:
    code = "import sys; print('partial'); print('disk full', file=sys.stderr); sys.exit(3)"
    assert await run({"argv": [PY, "-c", code]}) == Outcome(success=False, error="exit 3: disk full\n")


async def test_death_by_signal_is_named() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert await run({"argv": [PY, "-c", code]}) == Outcome(
        success=False, error="exit -9 (killed by SIGKILL): "
    )


async def test_stdout_keeps_only_the_last_16_kib() -> None:
    code = "import sys; sys.stdout.write(''.join(f'{i:08d}\\n' for i in range(20000)))"
    outcome = await run({"argv": [PY, "-c", code]})
    expected = "".join(f"{i:08d}\n" for i in range(20000))[-TAIL_BYTES:]
    assert outcome.success
    assert outcome.result["stdout_tail"] == expected and len(expected) == 16 * 1024


async def test_stderr_tail_in_the_error_is_capped_too() -> None:
    code = "import sys; sys.stderr.write('e' * 50000 + 'END'); sys.exit(1)"
    outcome = await run({"argv": [PY, "-c", code]})
    assert outcome == Outcome(success=False, error="exit 1: " + ("e" * 50000 + "END")[-TAIL_BYTES:])


def test_tail_never_starts_inside_a_utf8_character() -> None:
    tail = Tail(4)
    tail.feed("aé€".encode())  # 1 + 2 + 3 bytes; the last 4 cut é in half
    assert tail.text() == "€"
    assert tail.dropped == 2


async def test_env_is_merged_over_the_workers_and_cwd_is_used(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['CS_TEST_VALUE']); print('PATH' in os.environ)"
    outcome = await run({"argv": [PY, "-c", code], "env": {"CS_TEST_VALUE": "42"}, "cwd": str(tmp_path)})
    assert outcome.success
    assert outcome.result["stdout_tail"].splitlines() == [str(tmp_path), "42", "True"]


async def test_the_program_knows_which_job_and_attempt_it_runs() -> None:
    names = ["CHRONOSCHED_JOB_ID", "CHRONOSCHED_JOB_ATTEMPT", "CHRONOSCHED_JOB_KEY", "CHRONOSCHED_DAG_ID"]
    code = f"import os; print([os.environ[n] for n in {names!r} + ['CHRONOSCHED_NAMESPACE']])"
    outcome = await run({"argv": [PY, "-c", code]})
    assert outcome.success
    assert outcome.result["stdout_tail"].strip() == str(["job-1", "1", "", "", "team-a"])


async def test_a_stop_for_the_lease_uses_its_own_shorter_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    ctx = make_ctx({"argv": [PY, "-c", IGNORES_TERM, str(pid_file)]}, kind="command")
    task = asyncio.create_task(execute(CommandKind(kill_grace_s=30.0), ctx))
    pid = await read_pid(pid_file)
    cancelled_at = time.monotonic()
    ctx.cancelled.set("lease may lapse", grace_s=0.3)
    assert await task == Outcome(success=False, error="cancelled: lease may lapse")
    # SIGKILL after 0.3 s, not after the kind's 30 s.
    assert 0.3 <= time.monotonic() - cancelled_at < 2.0
    assert not pid_alive(pid)


def _listing(path: Path) -> list[Path]:
    return list(path.iterdir())


async def test_argv_is_not_run_through_a_shell(tmp_path: Path) -> None:
    outcome = await run({"argv": ["echo", "$HOME; touch pwned"], "cwd": str(tmp_path)})
    assert outcome.result["stdout_tail"] == "$HOME; touch pwned\n"
    assert _listing(tmp_path) == []


async def test_payload_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    script = f"echo $$ > {tmp_path}/leader; sleep 60 & echo $! > {tmp_path}/child; wait"
    started = time.monotonic()
    outcome = await run({"argv": ["sh", "-c", script], "timeout": 0.5})
    assert outcome == Outcome(success=False, error="command timed out after 0.5s")
    assert time.monotonic() - started < DEFAULT_KILL_GRACE_S  # sh and sleep obey SIGTERM
    leader, child = await read_pid(tmp_path / "leader"), await read_pid(tmp_path / "child")
    assert not pid_alive(leader)
    # Signals are delivered asynchronously: the grandchild dies a moment later.
    await eventually(lambda: not pid_alive(child), within=2, what=f"pid {child} to exit")


async def test_execution_timeout_kills_the_process(tmp_path: Path) -> None:
    script = f"echo $$ > {tmp_path}/leader; exec sleep 60"
    outcome = await run({"argv": ["sh", "-c", script]}, timeout_s=0.3)
    assert outcome == Outcome(success=False, error="execution timeout after 0.3s")
    assert not pid_alive(await read_pid(tmp_path / "leader"))


# A child that ignores SIGTERM and writes its pid once that is in place.
IGNORES_TERM = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
    "time.sleep(60)\n"
)


async def test_cancel_sends_sigterm_then_sigkill_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    ctx = make_ctx({"argv": [PY, "-c", IGNORES_TERM, str(pid_file)]}, kind="command")
    task = asyncio.create_task(execute(CommandKind(kill_grace_s=1.0), ctx))
    pid = await read_pid(pid_file)
    cancelled_at = time.monotonic()
    ctx.cancelled.set("DAG cancelled")
    assert await task == Outcome(success=False, error="cancelled: DAG cancelled")
    waited = time.monotonic() - cancelled_at
    # It survived SIGTERM for the whole grace; only SIGKILL ended it.
    assert 1.0 <= waited < 4.0
    assert not pid_alive(pid)


async def test_cancel_stops_a_cooperative_process_with_sigterm(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    open(sys.argv[1] + '.term', 'w').write('TERM')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
        "time.sleep(60)\n"
    )
    pid_file = tmp_path / "pid"
    ctx = make_ctx({"argv": [PY, "-c", code, str(pid_file)]}, kind="command")
    task = asyncio.create_task(execute(CommandKind(kill_grace_s=20.0), ctx))
    pid = await read_pid(pid_file)
    cancelled_at = time.monotonic()
    ctx.cancelled.set("operator")
    assert await task == Outcome(success=False, error="cancelled: operator")
    assert time.monotonic() - cancelled_at < 10.0  # well inside the 20 s grace
    assert (tmp_path / "pid.term").read_text() == "TERM"
    assert not pid_alive(pid)


async def test_processes_left_behind_are_killed_when_the_command_ends(tmp_path: Path) -> None:
    outcome = await run({"argv": ["sh", "-c", f"sleep 60 & echo $! > {tmp_path}/child; echo done"]})
    assert outcome == Outcome(
        success=True, result={"exit_code": 0, "stdout_tail": "done\n", "stderr_tail": ""}
    )
    child = await read_pid(tmp_path / "child")
    await eventually(lambda: not pid_alive(child), within=2, what=f"pid {child} to exit")


def test_default_kill_grace_is_five_seconds() -> None:
    assert DEFAULT_KILL_GRACE_S == 5.0 and CommandKind().kill_grace_s == 5.0


async def test_missing_program_is_a_retryable_failure() -> None:
    assert await run({"argv": ["chronosched-no-such-program"]}) == Outcome(
        success=False, error="cannot start 'chronosched-no-such-program': No such file or directory"
    )


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({}, "payload.argv is required"),
        ({"argv": None}, "payload.argv is required"),
        ({"argv": []}, "payload.argv must be a non-empty list of strings"),
        ({"argv": "ls -l"}, "payload.argv must be a non-empty list of strings"),
        ({"argv": ["ls", 3]}, "payload.argv[1] must be a string"),
        ({"argv": [""]}, "payload.argv[0] must not be empty"),
        ({"argv": ["ls"], "env": ["A=1"]}, "payload.env must be an object of strings"),
        ({"argv": ["ls"], "env": {"A": 1}}, "payload.env.A must be a string"),
        ({"argv": ["ls"], "env": {"A=B": "1"}}, "payload.env.A=B is not a valid environment variable name"),
        ({"argv": ["ls"], "cwd": 5}, "payload.cwd must be a non-empty string"),
        ({"argv": ["ls"], "timeout": "10"}, "payload.timeout must be a number of seconds"),
        ({"argv": ["ls"], "timeout": True}, "payload.timeout must be a number of seconds"),
        ({"argv": ["ls"], "timeout": -1}, "payload.timeout must be a positive number of seconds"),
    ],
)
async def test_bad_payload_fails_the_job_for_good_naming_the_field(
    payload: dict[str, Any], error: str
) -> None:
    assert await run(payload) == Outcome(success=False, error=f"invalid payload: {error}", non_retryable=True)


# The job of the worker-death test: writes its pid, starts a grandchild that
# writes its own pid (argv[2]) and sleeps, then sleeps.
WITH_GRANDCHILD = (
    "import os, subprocess, sys, time\n"
    "open(sys.argv[1], 'w').write(f'{os.getpid()}\\n')\n"
    "subprocess.Popen([sys.executable, '-c', sys.argv[3], sys.argv[2]])\n"
    "time.sleep(60)\n"
)
GRANDCHILD = "import os, sys, time; open(sys.argv[1], 'w').write(f'{os.getpid()}\\n'); time.sleep(60)"


async def test_a_killed_workers_job_dies_with_it_and_the_reaper_gets_the_rest(tmp_path: Path) -> None:
    fake = FakeServer()
    await fake.start()
    args = ["--server", fake.address, "--namespace", "team-a", "--kinds", "command", "--worker-id", "doomed"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    # In a session of its own, as `chronosched up` starts its workers.
    worker = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "chronosched_worker",
        *args,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        stream = await fake.next_stream(within=20)
        await stream.expect("subscribe")
        child_file, grandchild_file = tmp_path / "child", tmp_path / "grandchild"
        argv = [PY, "-c", WITH_GRANDCHILD, str(child_file), str(grandchild_file), GRANDCHILD]
        stream.push(assignment("a", kind="command", payload={"argv": argv}))
        child = await read_pid(child_file)
        pids.append(child)
        grandchild = await read_pid(grandchild_file)
        pids.append(grandchild)

        worker.kill()
        assert await worker.wait() == -signal.SIGKILL
        await eventually(lambda: not pid_alive(child), within=1.0, what=f"the job (pid {child}) to die")
        # PDEATHSIG reaches only the program the worker started; what that
        # started is orphaned, not dead, until the supervisor reaps the session.
        assert pid_alive(grandchild)

        assert await asyncio.to_thread(reap_session, worker.pid) == [grandchild]
        assert not pid_alive(grandchild)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await fake.stop()


async def test_the_program_sees_what_it_would_if_started_directly() -> None:
    # Linux starts the program through a Python trampoline (for its
    # death-signal); neither Python's ignored signals nor its C-locale
    # coercion (LC_CTYPE=C.UTF-8) may reach the program.
    probe = ["sh", "-c", "env | sort; grep -E '^Sig(Ign|Blk)' /proc/self/status || true"]
    env = {"LC_ALL": "", "LC_CTYPE": "C", "CS_TEST_VALUE": "x y"}
    direct = await asyncio.create_subprocess_exec(
        *probe,
        env={**os.environ, **job_env(make_ctx()), **env},
        stdout=asyncio.subprocess.PIPE,
        process_group=0,
    )
    expected, _ = await direct.communicate()
    outcome = await run({"argv": probe, "env": env})
    assert outcome.success, outcome
    assert outcome.result["stdout_tail"] == expected.decode()
    assert "LC_CTYPE=C\n" in expected.decode()
