"""Server configuration: built once at start-up from flags and CHRONOSCHED_*
variables, then passed down. Modules never read os.environ themselves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_PREFIX = "CHRONOSCHED_"

# Large enough for a 1,000,000-job DAG in one CreateDag call (about 60 bytes a
# job and 40 an edge on the wire), with headroom.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Everything the server process needs to run."""

    database_url: str
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    pool_min_size: int = 2
    pool_max_size: int = 10
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # The health checker holds a database session of its own and hears at
    # once when PostgreSQL ends it (shutdown, crash); it also pings that
    # session this often, for a database that stops answering without
    # closing anything.
    health_ping_interval_s: float = 0.5
    # How long a health ping, or an attempt to connect, may take.
    health_timeout_s: float = 0.5
    # How often the health checker tries to connect while the database is away.
    health_retry_interval_s: float = 0.25
    # How long a pushed job's lease lasts; each worker heartbeat renews it.
    lease_s: float = 30.0
    # Safety-net poll of the dispatcher (missed NOTIFYs, delayed jobs).
    poll_interval_s: float = 0.5
    # How often expired leases are looked for.
    reap_interval_s: float = 1.0
    # Run the cron scheduler in this process. Every replica may run it: the
    # fire ledger's key lets exactly one of them record each tick.
    scheduler_enabled: bool = True

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"


def env_default(
    name: str, default: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Read CHRONOSCHED_<name> as a flag's default; only cli.py calls this."""
    env = os.environ if environ is None else environ
    return env.get(ENV_PREFIX + name, default)
