"""The `command` kind: run a program, succeed on exit 0.

Payload: {"argv": ["prog", "arg", ...], "env": {"K": "V"}, "cwd": "/dir",
"timeout": seconds}. argv is executed directly, never through a shell (use
["sh", "-c", "..."] to ask for one). env is merged over the worker's own,
after the job's identity: CHRONOSCHED_JOB_ID, CHRONOSCHED_JOB_ATTEMPT (the
fencing token: a program writing somewhere can record it), CHRONOSCHED_JOB_KEY,
CHRONOSCHED_DAG_ID (empty for standalone jobs) and CHRONOSCHED_NAMESPACE.

Each run gets its own process group, and that group is the unit of clean-up:
cancellation and timeouts send SIGTERM to the whole group, then SIGKILL after
a grace; when the program ends, anything it left behind in its group is
killed, so a job's processes never outlive the job.

They do not outlive the worker either. The group stays inside the worker's
session, so a supervisor that started the worker in a session of its own can
kill what is left once the worker died (chronosched_worker.reaper; `up` does
this). On Linux the program itself is also killed by the kernel the moment the
worker dies (PR_SET_PDEATHSIG). Together they keep a worker restarted under
the same id from running beside its predecessor's copy of a job. Without
prctl (not Linux) only the supervisor's reaper remains; see docs/workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from chronosched_worker.context import JobContext, JobFailed
from chronosched_worker.kinds._payload import invalid, optional_seconds, optional_str, str_dict, str_list

DEFAULT_KILL_GRACE_S = 5.0
TAIL_BYTES = 16 * 1024
# How long to keep reading output after the program exited.
_DRAIN_AFTER_EXIT_S = 2.0

# Keeps shielded clean-ups referenced until they finish (asyncio holds only
# weak references to tasks).
_cleanups: set[asyncio.Task[None]] = set()

log = logging.getLogger("chronosched.worker.command")

# Becomes the job's program after asking the kernel to SIGKILL it when the
# worker dies (prctl PR_SET_PDEATHSIG, which exec keeps). Run as
#   python -I -S -c TRAMPOLINE <worker pid> <error fd> <argv...>
# rather than as a preexec_fn: with one, CPython runs its after-fork hooks
# (threading's) in the child of this multi-threaded process, and those
# segfaulted in a few percent of spawns in this project's tests. Without one,
# Popen forks and execs with no Python code in between. The price is a Python
# start-up (about 10 ms) per job.
#
# The signal fires when the *thread* that forked exits, not the process.
# asyncio forks from the event-loop thread, which lives as long as the worker
# runs jobs, so in practice it is the worker's death.
_TRAMPOLINE = """\
import ctypes, os, signal, sys
worker, error_fd, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
prctl = ctypes.CDLL(None).prctl
prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != worker:
    os._exit(1)  # the worker died before prctl: nothing would send the signal
# Python ignores these at start-up and exec keeps ignored signals.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
# The environment as given, before Python's C-locale coercion added LC_CTYPE.
try:
    with open('/proc/self/environ', 'rb') as f:
        env = dict(e.split(b'=', 1) for e in f.read().split(b'\\0') if e.find(b'=') > 0)
except OSError:
    env = os.environb
os.set_inheritable(error_fd, False)  # closed by a successful exec
try:
    os.execvpe(argv[0], argv, env)
except OSError as exc:
    os.write(error_fd, b'%d' % exc.errno)
    os._exit(127)
"""


def _pdeathsig_available() -> bool:
    # The trampoline needs sys.executable to be a Python interpreter, which
    # it is not in a frozen (PyInstaller-style) build.
    if not sys.platform.startswith("linux") or not sys.executable or getattr(sys, "frozen", False):
        return False
    try:
        ctypes.CDLL(None).prctl  # noqa: B018 - the lookup is the test
    except (OSError, AttributeError):
        return False
    return True


_PDEATHSIG = _pdeathsig_available()
_warned = False


def _warn_once_without_pdeathsig() -> None:
    # At the first job rather than at import, when logging is set up.
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "PR_SET_PDEATHSIG is not available on %s: a command's processes outlive a killed "
            "worker unless its supervisor reaps the worker's session",
            sys.platform,
        )


async def _exec_errno(fd: int) -> int | None:
    """The errno the trampoline reports when it cannot exec the program, or
    None once the pipe closes (the exec happened, or the trampoline died)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    data = os.read(fd, 32)
    try:
        return int(data) if data else None
    except ValueError:
        return None


def job_env(ctx: JobContext) -> dict[str, str]:
    """The job's identity, for the program (see the module doc)."""
    return {
        "CHRONOSCHED_JOB_ID": ctx.job_id,
        "CHRONOSCHED_JOB_ATTEMPT": str(ctx.attempt),
        "CHRONOSCHED_JOB_KEY": ctx.key,
        "CHRONOSCHED_DAG_ID": ctx.dag_id,
        "CHRONOSCHED_NAMESPACE": ctx.namespace_id,
    }


@dataclass(frozen=True)
class CommandSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    timeout_s: float | None


def parse_command(payload: dict[str, Any]) -> CommandSpec:
    """Validate a `command` payload; raises NonRetryable naming the bad field."""
    argv = str_list(payload, "argv")
    env = str_dict(payload, "env")
    for name in env:
        if not name or "=" in name or "\0" in name:
            raise invalid(f"env.{name}", "is not a valid environment variable name")
    for i, arg in enumerate(argv):
        if "\0" in arg:
            raise invalid(f"argv[{i}]", "must not contain NUL bytes")
    return CommandSpec(
        argv=argv,
        env=env,
        cwd=optional_str(payload, "cwd"),
        timeout_s=optional_seconds(payload, "timeout"),
    )


class Tail:
    """The last `limit` bytes of a stream, without holding the rest."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self._data += chunk
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def text(self) -> str:
        data = bytes(self._data)
        if self.dropped:
            # The cut may have landed inside a UTF-8 sequence; skip its
            # continuation bytes rather than print a replacement character.
            start = 0
            while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
                start += 1
            data = data[start:]
        return data.decode("utf-8", errors="replace")


class _Protocol(asyncio.SubprocessProtocol):
    """Feeds output into tails and reports the exit on its own.

    On Python 3.11 Process.wait() returns only once the pipes close too, so a
    leftover grandchild holding stdout would keep a finished job running;
    process_exited() fires when the program itself ends.
    """

    def __init__(self, stdout: Tail, stderr: Tail) -> None:
        loop = asyncio.get_running_loop()
        self._tails = {1: stdout, 2: stderr}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._tails[fd].feed(data.encode() if isinstance(data, str) else data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class CommandKind:
    """Handler for the `command` kind."""

    def __init__(self, *, kill_grace_s: float = DEFAULT_KILL_GRACE_S, tail_bytes: int = TAIL_BYTES) -> None:
        self.kill_grace_s = kill_grace_s
        self.tail_bytes = tail_bytes

    async def __call__(self, ctx: JobContext) -> dict[str, Any]:
        spec = parse_command(ctx.payload)
        stdout, stderr = Tail(self.tail_bytes), Tail(self.tail_bytes)
        protocol = _Protocol(stdout, stderr)
        argv = spec.argv
        error_r: int | None = None
        pass_fds: tuple[int, ...] = ()
        if _PDEATHSIG:
            error_r, error_w = os.pipe()
            argv = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), str(error_w), *argv]
            pass_fds = (error_w,)
        else:
            _warn_once_without_pdeathsig()
        spawned = False
        try:
            transport, _ = await asyncio.get_running_loop().subprocess_exec(
                lambda: protocol,
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **job_env(ctx), **spec.env},
                cwd=spec.cwd,
                # A group of its own but not a session: the worker's session
                # is how a supervisor finds what a killed worker left behind.
                process_group=0,
                pass_fds=pass_fds,
            )
            spawned = True
        except OSError as exc:
            # Missing program or cwd: retryable, another worker may have them.
            raise JobFailed(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}") from exc
        finally:
            for fd in pass_fds:
                os.close(fd)  # else the pipe never reports the exec
            if not spawned and error_r is not None:
                os.close(error_r)

        pid = transport.get_pid()
        exec_errno: int | None = None
        try:
            try:
                async with asyncio.timeout(spec.timeout_s):
                    if error_r is not None:
                        exec_errno = await _exec_errno(error_r)
                    await asyncio.shield(protocol.exited)
            except TimeoutError:
                await self._terminate_shielded(pid, protocol, self.kill_grace_s)
                assert spec.timeout_s is not None
                detail = stderr.text().strip()
                raise JobFailed(
                    f"command timed out after {spec.timeout_s:g}s" + (f": {detail}" if detail else "")
                ) from None
            except asyncio.CancelledError:
                # A stop for a lease that may lapse brings its own, shorter grace.
                grace = self.kill_grace_s
                if ctx.cancelled.grace_s is not None:
                    grace = min(grace, ctx.cancelled.grace_s)
                await self._terminate_shielded(pid, protocol, grace)
                raise
        finally:
            if error_r is not None:
                os.close(error_r)
            _killpg(pid, signal.SIGKILL)  # leftovers in the job's group
            # Let the last output arrive; a descendant that escaped into a
            # session of its own may hold the pipes, so do not wait forever.
            await asyncio.wait({protocol.closed}, timeout=_DRAIN_AFTER_EXIT_S)
            transport.close()

        if exec_errno is not None:
            raise JobFailed(f"cannot start {spec.argv[0]!r}: {os.strerror(exec_errno)}")
        code = transport.get_returncode()
        assert code is not None
        if code != 0:
            raise JobFailed(f"exit {_describe_code(code)}: {stderr.text()}")
        return {"exit_code": code, "stdout_tail": stdout.text(), "stderr_tail": stderr.text()}

    async def _terminate_shielded(self, pid: int, protocol: _Protocol, grace_s: float) -> None:
        """Stop the group; a second cancellation cannot interrupt this."""
        cleanup = asyncio.ensure_future(terminate(pid, protocol.exited, grace_s))
        _cleanups.add(cleanup)
        cleanup.add_done_callback(_cleanups.discard)
        await asyncio.shield(cleanup)


async def terminate(pgid: int, exited: asyncio.Future[None], grace_s: float) -> None:
    """SIGTERM the process group; SIGKILL it if the leader outlives `grace_s`."""
    _killpg(pgid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_s):
            await asyncio.shield(exited)
    except TimeoutError:
        _killpg(pgid, signal.SIGKILL)
        await exited
    # Members that ignored SIGTERM while the leader obeyed it.
    _killpg(pgid, signal.SIGKILL)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    # The group id is the leader's pid (process_group=0). The kernel keeps a
    # group's id from being reused while any member lives, so this reaches
    # only what the job started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _describe_code(code: int) -> str:
    if code < 0:
        try:
            return f"{code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)
