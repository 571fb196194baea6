"""Kill what a dead worker left behind: every process still in its session.

A supervisor that starts a worker with start_new_session=True makes the
worker's pid its session id, and everything the worker starts carries that
session id (the `command` kind gives each job a process group of its own,
but inside the worker's session). When the worker dies, PR_SET_PDEATHSIG
takes the programs it started with it, but not their descendants: those are
handed to init and run on. `reap_session(worker_pid)` finds them by session
id and SIGKILLs them.

Matching on the session id reaches only the dead worker's leftovers: the
kernel does not hand a pid out again while any process still uses it as its
session id. The one gap is after the last leftover is gone, when the pid is
free and a new process could get it and call setsid(); so call this as soon
as the worker's death is seen, not minutes later. A descendant that called
setsid() itself (a daemonizing double-fork) is in another session and out of
reach.

Linux only (it reads /proc); elsewhere it logs and does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("chronosched.reaper")

REAP_TIMEOUT_S = 5.0
_POLL_S = 0.02
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on, or None if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 2 is the command name in parentheses, and the name itself may
    # hold spaces and parentheses: everything after the last ")" is fields 3+.
    return text.rpartition(")")[2].split()


def session_members(session_id: int) -> list[int]:
    """The live processes (zombies excluded) whose session id is
    `session_id`; empty without /proc."""
    members: list[int] = []
    try:
        names = os.listdir(_PROC)
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        # fields[0] is the state (field 3), fields[3] the session (field 6).
        if fields is None or len(fields) < 4 or fields[0] in ("Z", "X"):
            continue
        if fields[3] == str(session_id):
            members.append(int(name))
    return sorted(members)


def reap_session(session_id: int, *, timeout_s: float = REAP_TIMEOUT_S) -> list[int]:
    """SIGKILL every process in session `session_id` (the pid of a worker
    started with start_new_session=True that has died) and wait up to
    `timeout_s` for them to be gone. Returns the pids it killed; anything
    still there at the deadline is logged.
    """
    if session_id <= 1:
        # 0 is the kernel's threads, 1 init's session: never a worker's.
        raise ValueError(f"not a worker's session id: {session_id}")
    if not (_PROC / "self" / "stat").exists():
        log.info("no /proc here: cannot look for processes left in session %d", session_id)
        return []
    if session_id == os.getsid(0):
        raise ValueError(f"session {session_id} is the caller's own")

    killed: set[int] = set()
    unkillable: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        waiting: list[int] = []
        # Every round kills every member again: a leftover may have forked
        # between the scan and its SIGKILL, and its child is a member too.
        for pid in session_members(session_id):
            if pid in unkillable:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            except PermissionError:
                log.warning("cannot kill pid %d left in session %d: permission denied", pid, session_id)
                unkillable.add(pid)
                continue
            killed.add(pid)
            waiting.append(pid)
        if not waiting:
            return sorted(killed)
        if time.monotonic() >= deadline:
            log.warning(
                "processes of session %d still there %.0fs after SIGKILL: %s",
                session_id,
                timeout_s,
                ", ".join(map(str, waiting)),
            )
            return sorted(killed)
        time.sleep(_POLL_S)
