"""A silent link is noticed by both sides within the documented bound
(docs/workers.md, "Silent peers"): with the default 30 s lease, heartbeats
and keepalives every 5 s and a 15 s silence timeout."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from chronosched_server.app import Server
from chronosched_server.config import Config
from chronosched_worker import JobContext, Worker
from tests.faults.infra_proxy import BlackHoleProxy
from tests.support.waiting import poll

BOUND_S = 15.0
# The server's timer looks every 0.5 s; the worker's loop wakes on time.
SLACK_S = 1.0


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_both_sides_notice_a_silent_link_within_the_bound(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = Server(Config(database_url=database_url, grpc_port=0))
    port = await server.start()
    proxy = BlackHoleProxy("127.0.0.1", port)
    proxy_port = await proxy.start()
    worker = Worker(f"127.0.0.1:{proxy_port}", worker_id="quiet", namespaces=["nobody"])

    @worker.handler("noop")
    async def noop(ctx: JobContext) -> None:
        del ctx

    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:

        async def registered() -> bool:
            return any(s.worker_id == "quiet" for s in server.dispatcher.streams)

        await poll(registered, within=10, what="the worker's stream")
        assert server.dispatcher.config.silence_timeout_s == BOUND_S
        proxy.pause()
        cut = time.monotonic()
        seen: dict[str, float] = {}

        async def both_noticed() -> bool:
            now = time.monotonic() - cut
            if "server" not in seen and not await registered():
                seen["server"] = now
            if "worker" not in seen and "no word from the server" in caplog.text:
                seen["worker"] = now
            return len(seen) == 2

        await poll(both_noticed, within=BOUND_S + 10, what="both sides to notice the silence", every=0.05)
    finally:
        stop.set()
        proxy.resume()
        await asyncio.wait_for(running, 30)
        await proxy.close()
        await server.stop(grace=0)
    print(f"\nsilent link noticed after: server {seen['server']:.1f}s, worker {seen['worker']:.1f}s")
    assert BOUND_S - 5.0 <= seen["server"] <= BOUND_S + SLACK_S, seen
    assert BOUND_S - 5.0 <= seen["worker"] <= BOUND_S + SLACK_S, seen
