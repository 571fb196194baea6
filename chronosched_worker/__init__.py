"""chronosched worker process and Python SDK.

    from chronosched_worker import JobContext, Worker, register_builtin_kinds

    worker = Worker("127.0.0.1:50051", namespaces=["team-a"], concurrency=16)
    register_builtin_kinds(worker)          # `http` and `command`

    @worker.handler("echo")
    async def echo(ctx: JobContext) -> dict[str, object]:
        return {"echo": ctx.payload}

    worker.run_forever()                    # until SIGTERM/SIGINT, then drain

Imports only the client package (`chronosched`), grpc and the standard library.
"""

from chronosched_worker.context import CancelSignal, Handler, JobContext, JobFailed, NonRetryable
from chronosched_worker.kinds import register_builtin_kinds
from chronosched_worker.runner import Outcome, execute
from chronosched_worker.sdk import Worker

__all__ = [
    "CancelSignal",
    "Handler",
    "JobContext",
    "JobFailed",
    "NonRetryable",
    "Outcome",
    "Worker",
    "execute",
    "register_builtin_kinds",
]
