"""Running blocking code for a job without the default executor.

asyncio.to_thread would put every sync handler on the loop's default
executor, which holds min(32, cpus + 4) threads (6 on a 2-core box) and so
caps a worker with 16 slots at 6 concurrent sync jobs. Its threads are also
joined at interpreter exit, so one handler stuck past the shutdown grace would
keep the process alive. A daemon thread per call has neither problem; slots
already bound how many exist at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_in_thread(fn: Callable[[], T], *, name: str) -> T:
    """Run `fn` in a fresh daemon thread and await its result.

    Cancelling the awaiting task abandons the thread (Python threads cannot be
    interrupted); whatever it returns afterwards is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(ok: bool, value: object) -> None:
        if future.done():  # the awaiting task gave up on us
            return
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def target() -> None:
        try:
            result: object = context.run(fn)
            ok = True
        except BaseException as exc:
            # SystemExit/KeyboardInterrupt from a handler must not end the
            # worker; they become an ordinary failure of the attempt.
            result = exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")
            ok = False
        # RuntimeError: the loop is closed; the worker has exited and nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, ok, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
