"""Server configuration: built once at start-up from flags and CHRONOSCHED_*
variables, then passed down. Modules never read os.environ themselves."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ENV_PREFIX = "CHRONOSCHED_"

# Large enough for a 1,000,000-job DAG in one CreateDag call (about 60 bytes a
# job and 40 an edge on the wire), with headroom.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Finished work older than this moves to the history tables on its own.
DEFAULT_RETENTION = timedelta(days=7)


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
    # Finished DAGs and standalone jobs that ended longer ago than this are
    # moved to the history tables by the retention loop; 0 turns it off.
    retention: timedelta = DEFAULT_RETENTION
    # How long the retention loop rests once it has caught up (a batch that
    # was not full); tests set it low.
    retention_interval_s: float = 300.0
    # Jobs per retention transaction: up to this many standalone jobs, and
    # DAGs until their jobs add up to this many (always at least one DAG).
    retention_batch: int = 1000
    # TLS on the gRPC listener: PEM files of the server's certificate (chain)
    # and key. With a client CA as well, every client must present a
    # certificate that CA issued (mutual TLS). All None: plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Bearer tokens (docs/security.md). `chronosched server` requires them
    # unless --insecure-no-auth; servers built in-process (tests, benches)
    # run without unless they say so. The admin token (CHRONOSCHED_ADMIN_TOKEN)
    # is accepted as an admin token without a database row; kept out of repr
    # so that logging the config never prints it.
    require_tokens: bool = False
    admin_token: str | None = field(default=None, repr=False)
    # How often an open stream's token is checked again, so that a revoked
    # or expired token's worker stream ends.
    token_recheck_s: float = 30.0
    # Per-caller quotas (a token, or the peer's address without auth):
    # requests a second with bursts up to rate_burst, and open Dequeue
    # streams. 0 turns one off; off by default and in `chronosched up`.
    rate_limit: float = 0.0
    rate_burst: int = 0
    max_streams_per_caller: int = 0
    # Serve Prometheus metrics over HTTP at /metrics on this port, on the
    # gRPC listen host; None: not served (0: any free port, for tests).
    metrics_port: int | None = None

    @property
    def grpc_address(self) -> str:
        return host_port(self.grpc_host, self.grpc_port)


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (`[::1]:50051`), as
    gRPC targets, URLs and bind addresses spell it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The addresses that mean "every interface" to bind(); a client on this
# machine reaches such a listener on loopback.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def connect_host(listen: str) -> str:
    """Where a client on this machine reaches a listener bound to `listen`."""
    return WILDCARD_HOSTS.get(listen, listen)


def env_default(
    name: str, default: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Read CHRONOSCHED_<name> as a flag's default; only cli.py calls this."""
    env = os.environ if environ is None else environ
    return env.get(ENV_PREFIX + name, default)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# The same bound as Prune's older_than: beyond it, `now() - interval` leaves
# PostgreSQL's range of timestamps.
MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """`7d`, `12h`, `30m`, `3600s` or `0`: a whole number and one unit, at
    most 36500 days. Raises ValueError saying what is accepted."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a duration: {text!r} (use a whole number with s, m, h or d, e.g. 7d, 12h, or 0)"
        )
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"at most 36500d: {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The form parse_duration reads back, in the largest unit that divides
    the (whole-second) value: `7d`, `90m`, `0`."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0"
    unit = next(u for u in ("d", "h", "m", "s") if seconds % _UNIT_SECONDS[u] == 0)
    return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
