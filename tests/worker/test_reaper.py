"""chronosched_worker.reaper against a real, throwaway process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronosched_worker.reaper import reap_session, session_members
from tests.support.processes import pid_alive
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the reaper reads /proc"),
]

PY = sys.executable

# A session leader (the stand-in for a dead worker) with, in its session: a
# child, a child in a process group of its own (as the `command` kind starts
# jobs) with a grandchild of its own, and a child frozen with SIGSTOP. One
# more child escapes into a session of its own and must be left alone. The
# leader writes every pid once all are running.
LEADER = """
import os, signal, subprocess, sys, time
out = sys.argv[1]
sleep = [sys.executable, '-c', 'import time; time.sleep(120)']
plain = subprocess.Popen(sleep)
spawner = ('import subprocess, sys, time\\n'
           'c = subprocess.Popen(sys.argv[1:])\\n'
           'print(c.pid, flush=True)\\n'
           'time.sleep(120)\\n')
group = subprocess.Popen([sys.executable, '-c', spawner, *sleep], stdout=subprocess.PIPE, process_group=0)
grandchild = int(group.stdout.readline())
frozen = subprocess.Popen(sleep)
os.kill(frozen.pid, signal.SIGSTOP)
escaped = subprocess.Popen(sleep, start_new_session=True)
pids = [plain.pid, group.pid, grandchild, frozen.pid, escaped.pid]
with open(out + '.tmp', 'w') as f:
    f.write(' '.join(map(str, pids)) + '\\n')
os.rename(out + '.tmp', out)
time.sleep(120)
"""


def _kill_quietly(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """The leader (started with setsid) and [plain, group, grandchild,
    frozen, escaped]; whatever is left is killed afterwards."""
    out = tmp_path / "pids"
    leader = subprocess.Popen([PY, "-c", LEADER, str(out)], start_new_session=True)
    pids: list[int] = []
    try:
        wait_until(out.exists, within=15, what=str(out), every=0.02)
        pids = [int(p) for p in out.read_text().split()]
        yield leader, pids
    finally:
        leader.kill()
        leader.wait()
        _kill_quietly(pids)


def test_kills_every_process_left_in_a_dead_leaders_session(
    tree: tuple[subprocess.Popen[bytes], list[int]],
) -> None:
    leader, pids = tree
    plain, group, grandchild, frozen, escaped = pids
    assert session_members(leader.pid) == sorted([leader.pid, plain, group, grandchild, frozen])
    assert os.getpgid(grandchild) == group != leader.pid  # another group, the same session

    leader.kill()
    leader.wait()
    assert all(pid_alive(p) for p in pids)  # orphaned, not dead

    killed = reap_session(leader.pid)

    assert killed == sorted([plain, group, grandchild, frozen])
    assert not [p for p in killed if pid_alive(p)]
    assert session_members(leader.pid) == []
    # The limit: a descendant that called setsid() is out of reach.
    assert pid_alive(escaped)


def test_an_empty_session_is_a_no_op() -> None:
    proc = subprocess.Popen([PY, "-c", "pass"], start_new_session=True)
    proc.wait()
    started = time.monotonic()
    assert reap_session(proc.pid) == []
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("session_id", [0, 1])
def test_refuses_the_kernels_and_inits_sessions(session_id: int) -> None:
    with pytest.raises(ValueError, match="not a worker's session id"):
        reap_session(session_id)


def test_refuses_the_callers_own_session() -> None:
    if os.getsid(0) <= 1:
        pytest.skip("running in init's session")
    with pytest.raises(ValueError, match="the caller's own"):
        reap_session(os.getsid(0))
