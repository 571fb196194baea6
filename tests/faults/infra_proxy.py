"""A TCP proxy that can turn into a black hole, for the dropped-stream test.

    proxy = BlackHoleProxy("127.0.0.1", server_port)
    port = await proxy.start()          # workers connect to 127.0.0.1:port
    proxy.pause()                       # stop forwarding, both directions
    proxy.resume()                      # forward again what was held back
    await proxy.close()

`pause()` does not close or reset any socket: both peers keep an open TCP
connection that simply carries nothing, as behind a silently failed NAT or a
partitioned link. Bytes sent meanwhile stay in the kernel's buffers (and at
most one chunk per direction in the proxy) and are delivered, in order, on
`resume()` — the way TCP behaves when a partition heals — so a result that a
worker wrote into the black hole reaches the server late, not never.

It runs on the test's event loop: pause() and resume() take effect before
they return, with no signalling race.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024


class BlackHoleProxy:
    """Forwards every connection made to its port to `upstream_host:upstream_port`."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.port = 0
        self.connections = 0
        # Bytes forwarded so far, per direction.
        self.sent_up = 0
        self.sent_down = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def pause(self) -> None:
        """Stop forwarding in both directions; sockets stay open."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with whatever was held back."""
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _accept(self, down_reader: asyncio.StreamReader, down_writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            down_writer.close()
            return
        self.connections += 1
        self._writers.update((down_writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(down_reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, down_writer, upstream=False)),
        ]
        self._tasks.update(pipes)
        try:
            # When one side ends, end the other: the proxy never holds half a
            # connection open by itself.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.wait(pipes)
            for writer in (down_writer, up_writer):
                writer.close()
                self._writers.discard(writer)
            self._tasks.difference_update(pipes)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                # Not reading while paused leaves the bytes in the kernel, so
                # the sender sees a live connection that goes nowhere.
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return
                # A chunk read just before pause() is held here, not sent.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                if upstream:
                    self.sent_up += len(data)
                else:
                    self.sent_down += len(data)
