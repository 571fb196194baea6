"""The `command` kind: run a program, succeed on exit 0.

Payload: {"argv": ["prog", "arg", ...], "env": {"K": "V"}, "cwd": "/dir",
"timeout": seconds}. argv is executed directly, never through a shell (use
["sh", "-c", "..."] to ask for one). env is merged over the worker's own.

Each run gets its own process group (a new session), and that group is the
unit of clean-up: cancellation and timeouts send SIGTERM to the whole group,
then SIGKILL after a grace; when the program ends, anything it left behind in
its group is killed, so a job's processes never outlive the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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
        try:
            transport, _ = await asyncio.get_running_loop().subprocess_exec(
                lambda: protocol,
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **spec.env},
                cwd=spec.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            # Missing program or cwd: retryable, another worker may have them.
            raise JobFailed(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}") from exc

        pid = transport.get_pid()
        try:
            try:
                async with asyncio.timeout(spec.timeout_s):
                    await asyncio.shield(protocol.exited)
            except TimeoutError:
                await self._terminate_shielded(pid, protocol)
                assert spec.timeout_s is not None
                detail = stderr.text().strip()
                raise JobFailed(
                    f"command timed out after {spec.timeout_s:g}s" + (f": {detail}" if detail else "")
                ) from None
            except asyncio.CancelledError:
                await self._terminate_shielded(pid, protocol)
                raise
        finally:
            _killpg(pid, signal.SIGKILL)  # leftovers in the job's group
            # Let the last output arrive; a descendant that escaped into a
            # session of its own may hold the pipes, so do not wait forever.
            await asyncio.wait({protocol.closed}, timeout=_DRAIN_AFTER_EXIT_S)
            transport.close()

        code = transport.get_returncode()
        assert code is not None
        if code != 0:
            raise JobFailed(f"exit {_describe_code(code)}: {stderr.text()}")
        return {"exit_code": code, "stdout_tail": stdout.text(), "stderr_tail": stderr.text()}

    async def _terminate_shielded(self, pid: int, protocol: _Protocol) -> None:
        """Stop the group; a second cancellation cannot interrupt this."""
        cleanup = asyncio.ensure_future(terminate(pid, protocol.exited, self.kill_grace_s))
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
    # The group id is the leader's pid (start_new_session). The kernel keeps a
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
