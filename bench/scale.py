"""Scaling with workers and with work: three drains, each against a baseline
drain of the same run.

    python -m bench.scale [--quick] [--jobs 20000] [--backlog 1000000]
                          [--namespaces 1000] [--rounds 3] [--backlog-rounds 3]

Every drain is of no-op jobs by SDK `Worker` processes (bench.scale_worker:
16 slots, an async no-op handler) against `chronosched server` as its own
process, on one throwaway embedded PostgreSQL. The workers are started and
imported first and then told to go together; the parent sums the handled
counts they report and tells them to stop once the drain's jobs are handled
(stopping drains: a worker returns once its results are acknowledged). A
drain's time runs from `go` until the last worker returned, so it includes
the last results' acknowledgement and the stop's latency (about 20 ms).
Every database gets an untimed VACUUM ANALYZE between a load and its drain
(as in bench.peers), and every server an untimed warm-up drain first.

1. Workers: --jobs independent jobs (CreateDag, 1,000 per call) drained by
   1, 2 and 4 worker processes; ratio to 1 worker, same round. A control row
   drains with one process of 64 slots (as many as 4 workers hold), which
   tells more jobs in flight apart from more processes. Also the CPU
   the worker processes, the server and PostgreSQL used while draining (from
   /proc), as cores busy on average.
2. Backlog: two fresh databases on the same PostgreSQL, one server process
   each (the other idles): one gets 10,000 READY jobs per round, the other
   --backlog jobs once, loaded with CreateDag of 10,000 jobs per call, two
   calls at a time (the server writes them with COPY). One worker drains all 10,000 of the small
   backlog and the first 10,000 of the big one; ratio big / small, same round.
3. Many namespaces and kinds: --namespaces namespaces x 5 kinds with 4 READY
   jobs in each pair (one CreateDag of 20 jobs per namespace), drained by one
   worker with `all_namespaces` and 5 handlers, and by one that names every
   namespace; against as many jobs in one (namespace, kind) drained by a
   worker serving just that. If the by-name drain fails (its worker exits, or
   nothing is handled for a minute) the table says so and later rounds leave
   it out.

Tables 1 and 3 share the first database and server and run first; table 2
runs last, on its own two.

Rounds interleave the rows of a table in an order that rotates from round to
round; tables give medians over the rounds with (min-max), and every ratio is
the median of the same-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg

from bench.common import database, postmaster_pid, server_pid, server_process, tree_cpu
from bench.peers import Chronosched, WorkerProcess, database_url, settle
from bench.throughput import make_jobs, setup
from chronosched.v1 import (
    dag_pb2,
    dag_pb2_grpc,
    definition_pb2,
    definition_pb2_grpc,
    namespace_pb2,
    namespace_pb2_grpc,
)
from chronosched_server.storage.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 16
WORKER_COUNTS = (1, 2, 4)
KINDS = tuple(f"k{i}" for i in range(5))
JOBS_PER_PAIR = 4
SMALL_BACKLOG = 10_000
BIG_BATCH = 10_000
CONTROL = "control: 1 worker"
WARM_UP_NS = "scale-warm-up"
WARM_UP_JOBS = 2_000
# A drain that handles nothing new for this long is reported as failed.
STALL_S = 60.0


# --- drains by worker processes -------------------------------------------------


@dataclass
class Drain:
    jobs: int
    seconds: float
    # CPU seconds over the drain.
    workers_cpu: float
    server_cpu: float
    pg_cpu: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def cores(self) -> tuple[float, float, float]:
        return (self.workers_cpu / self.seconds, self.server_cpu / self.seconds, self.pg_cpu / self.seconds)


class Stalled(RuntimeError):
    pass


@dataclass
class Target:
    """A server process and the PostgreSQL behind it, for CPU accounting."""

    port: int
    channel: grpc.aio.Channel
    url: str
    server: int
    postmaster: int

    @classmethod
    async def of(cls, port: int, channel: grpc.aio.Channel, url: str) -> Target:
        return cls(port, channel, url, server_pid(port), await postmaster_pid(url))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_worker(
    target: Target, subscription: Sequence[str], kinds: Sequence[str], slots: int
) -> WorkerProcess:
    return await WorkerProcess.spawn(
        "scale worker",
        "bench.scale_worker",
        "--server",
        target.address,
        *subscription,
        "--kinds",
        ",".join(kinds),
        "--concurrency",
        str(slots),
    )


def tell(worker: WorkerProcess, line: str) -> None:
    stdin = worker.proc.stdin
    assert stdin is not None
    if not stdin.is_closing():
        stdin.write(f"{line}\n".encode())


async def drain(
    target: Target,
    workers: int,
    jobs: int,
    subscription: Sequence[str],
    kinds: Sequence[str],
    slots: int = SLOTS,
) -> Drain:
    """`workers` processes drain until `jobs` jobs are handled between them
    (all of a queue of exactly that many, or the top of a bigger one)."""
    procs = await asyncio.gather(*(start_worker(target, subscription, kinds, slots) for _ in range(workers)))
    counts = [0] * workers
    enough = asyncio.Event()
    progress = asyncio.Event()

    async def follow(i: int) -> list[str]:
        stdout = procs[i].proc.stdout
        assert stdout is not None
        while True:
            raw = await stdout.readline()
            if not raw:
                raise RuntimeError(f"{procs[i].what} exited ({await procs[i].proc.wait()}) before 'done'")
            parts = raw.decode().split()
            if parts and parts[0] == "n":
                counts[i] = int(parts[1])
                progress.set()
                if sum(counts) >= jobs:
                    enough.set()
            elif parts and parts[0] == "done":
                return parts
            else:
                print(f"  [{procs[i].what}] {raw.decode().rstrip()}", flush=True)

    followers: list[asyncio.Task[list[str]]] = []
    try:
        cpu = (tree_cpu([target.server]), tree_cpu([target.postmaster]))
        started = time.perf_counter()
        for proc in procs:
            tell(proc, "go")
        followers += [asyncio.create_task(follow(i)) for i in range(workers)]
        while not enough.is_set():
            progress.clear()
            waiting = [asyncio.create_task(e.wait()) for e in (enough, progress)]
            finished, _ = await asyncio.wait(
                [*waiting, *followers], timeout=STALL_S, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in waiting:
                waiter.cancel()
            for follower in followers:
                if follower in finished:
                    # A worker that exited raises here; one that returned
                    # from run before its stop is as wrong.
                    follower.result()
                    raise RuntimeError(f"a worker stopped early ({sum(counts):,} of {jobs:,} handled)")
            if not finished:
                raise Stalled(f"no job handled for {STALL_S:.0f} s ({sum(counts):,} of {jobs:,} handled)")
        for proc in procs:
            tell(proc, "stop")
        dones = await asyncio.wait_for(asyncio.gather(*followers), 120)
        seconds = time.perf_counter() - started
        server_cpu = tree_cpu([target.server]) - cpu[0]
        pg_cpu = tree_cpu([target.postmaster]) - cpu[1]
    finally:
        for task in followers:
            task.cancel()
        for proc in procs:
            await proc.close()
    handled = sum(int(parts[2]) for parts in dones)
    if handled < jobs:
        raise RuntimeError(f"workers handled {handled} jobs, expected {jobs}")
    return Drain(handled, seconds, sum(float(parts[3]) for parts in dones), server_cpu, pg_cpu)


# --- figures --------------------------------------------------------------------


@dataclass
class Row:
    drains: list[Drain] = field(default_factory=list)
    # Same-round ratios to the table's baseline.
    ratios: list[float] = field(default_factory=list)
    failure: str = ""


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "—"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def times(values: Sequence[float]) -> str:
    if not values:
        return "—"
    med = f"{statistics.median(values):.2f}x"
    if len(values) == 1:
        return med
    return f"{med} ({min(values):.2f}-{max(values):.2f})"


def cores(row: Row) -> str:
    if not row.drains:
        return "—"
    w, s, p = (statistics.median(d.cores[i] for d in row.drains) for i in range(3))
    return f"{w:.2f} / {s:.2f} / {p:.2f} = {w + s + p:.2f}"


def cpu_per_job(row: Row) -> str:
    """CPU milliseconds per job, each process's share and the sum: workers /
    server / PostgreSQL = all."""
    if not row.drains:
        return "—"
    w = statistics.median(d.workers_cpu / d.jobs * 1e3 for d in row.drains)
    s = statistics.median(d.server_cpu / d.jobs * 1e3 for d in row.drains)
    p = statistics.median(d.pg_cpu / d.jobs * 1e3 for d in row.drains)
    return f"{w:.3f} / {s:.3f} / {p:.3f} = {w + s + p:.2f}"


def ratio_rows(rows: dict[str, Row], baseline: str, rnd: int) -> None:
    base = rows[baseline].drains
    if len(base) != rnd + 1:
        return
    for row in rows.values():
        if len(row.drains) == rnd + 1:
            row.ratios.append(row.drains[rnd].rate / base[rnd].rate)


async def rounds(
    rows: dict[str, Row],
    steps: Sequence[tuple[str, Callable[[], Awaitable[Drain]]]],
    baseline: str,
    count: int,
    optional: Sequence[str] = (),
) -> None:
    """Each round runs every step once, in an order rotating from round to
    round. A step in `optional` that fails is reported and left out after."""
    for rnd in range(count):
        order = [*steps[rnd % len(steps) :], *steps[: rnd % len(steps)]]
        print(
            f"  round {rnd + 1}/{count} (load average {os.getloadavg()[0]:.2f}):"
            f" {', '.join(name for name, _ in order)}",
            flush=True,
        )
        for name, step in order:
            row = rows.setdefault(name, Row())
            if row.failure:
                continue
            t0 = time.monotonic()
            try:
                got = await step()
            except Exception as exc:
                if name not in optional:
                    raise
                row.failure = f"{type(exc).__name__}: {exc}"
                print(f"    {name}: FAILED after {time.monotonic() - t0:.1f} s: {row.failure}", flush=True)
                continue
            row.drains.append(got)
            print(
                f"    {name}: {got.jobs:,} jobs in {got.seconds:.2f} s = {got.rate:,.0f} jobs/s"
                f" ({time.monotonic() - t0:.1f} s with setup)",
                flush=True,
            )
        ratio_rows(rows, baseline, rnd)


async def warm_up(target: Target) -> None:
    """An untimed drain before a server's first measured one (its pool,
    caches and the worker path warm). The worker also serves the kinds the
    tables use in every namespace, so that the server has seen them served
    and does not warn about each of the many definitions table 3 makes."""
    chrono = Chronosched(target.port, target.channel)
    await chrono.namespace(WARM_UP_NS)
    await chrono.enqueue(WARM_UP_NS, WARM_UP_JOBS)
    await drain(target, 1, WARM_UP_JOBS, ("--all-namespaces",), ("noop", *KINDS))


# --- 1. workers -----------------------------------------------------------------


async def workers_table(target: Target, jobs: int, count: int) -> dict[str, Row]:
    chrono = Chronosched(target.port, target.channel)
    ns = "scale-workers"
    await chrono.namespace(ns)
    rows: dict[str, Row] = {}

    def step(n: int, slots: int = SLOTS) -> Callable[[], Awaitable[Drain]]:
        async def run() -> Drain:
            await chrono.enqueue(ns, jobs)
            await settle(target.url)
            return await drain(target, n, jobs, ("--namespaces", ns), ("noop",), slots)

        return run

    steps = [(f"{n} worker{'s' if n > 1 else ''}", step(n)) for n in WORKER_COUNTS]
    # As many slots as the most workers have, in one process: how much of
    # their gain is jobs in flight rather than processes.
    most = max(WORKER_COUNTS) * SLOTS
    steps.append((f"{CONTROL} of {most} slots", step(1, most)))
    await rounds(rows, steps, steps[0][0], count)
    return rows


# --- 2. backlog -----------------------------------------------------------------


async def load(channel: grpc.aio.Channel, ns: str, def_id: str, jobs: int, parallel: int = 2) -> float:
    """`jobs` READY jobs in CreateDag calls of BIG_BATCH, `parallel` at once;
    returns jobs/s."""
    batches = [min(BIG_BATCH, jobs - first) for first in range(0, jobs, BIG_BATCH)]
    started = time.perf_counter()

    async def loader(mine: list[int]) -> None:
        for size in mine:
            await make_jobs(channel, ns, def_id, size, [])

    await asyncio.gather(*(loader(batches[i::parallel]) for i in range(parallel)))
    return jobs / (time.perf_counter() - started)


async def backlog_table(small: Target, big: Target, backlog: int, count: int) -> dict[str, Row]:
    ns = "scale-backlog"
    await warm_up(small)
    await warm_up(big)
    small_def = await setup(small.channel, ns)
    big_def = await setup(big.channel, ns)
    t0 = time.monotonic()
    rate = await load(big.channel, ns, big_def, backlog)
    print(
        f"  loaded {backlog:,} jobs with CreateDag of {BIG_BATCH:,} (2 calls at a time):"
        f" {rate:,.0f} jobs/s, {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    rows: dict[str, Row] = {}
    small_name = f"first {SMALL_BACKLOG:,} of a {SMALL_BACKLOG:,}-job backlog"
    big_name = f"first {SMALL_BACKLOG:,} of a {backlog:,}-job backlog"
    drained = 0

    async def small_step() -> Drain:
        await make_jobs(small.channel, ns, small_def, SMALL_BACKLOG, [])
        await settle(small.url)
        return await drain(small, 1, SMALL_BACKLOG, ("--namespaces", ns), ("noop",))

    async def big_step() -> Drain:
        nonlocal drained
        await settle(big.url)
        got = await drain(big, 1, SMALL_BACKLOG, ("--namespaces", ns), ("noop",))
        drained += got.jobs
        return got

    await rounds(rows, [(small_name, small_step), (big_name, big_step)], small_name, count)
    print(
        f"  the big backlog still held {backlog - drained:,} READY jobs at its last drain's end", flush=True
    )
    return rows


# --- 3. many namespaces and kinds --------------------------------------------------


def namespace_ids(count: int) -> list[str]:
    return [f"scale-ns{i:04d}" for i in range(count)]


async def many_setup(channel: grpc.aio.Channel, names: Sequence[str]) -> dict[str, list[str]]:
    """Each namespace with a definition per kind; namespace -> def ids in KINDS order."""
    namespaces = namespace_pb2_grpc.NamespaceServiceStub(channel)
    definitions = definition_pb2_grpc.DefinitionServiceStub(channel)
    out: dict[str, list[str]] = {}

    async def one(ns: str) -> None:
        await namespaces.CreateNamespace(namespace_pb2.CreateNamespaceRequest(namespace_id=ns))
        out[ns] = []
        for kind in KINDS:
            d = await definitions.CreateDefinition(
                definition_pb2.CreateDefinitionRequest(namespace_id=ns, name=kind, kind=kind)
            )
            out[ns].append(d.def_id)

    await gather_some([functools.partial(one, ns) for ns in names])
    return out


async def gather_some(calls: Sequence[Callable[[], Awaitable[None]]], at_once: int = 8) -> None:
    queue = list(reversed(calls))

    async def runner() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(runner() for _ in range(at_once)))


async def many_fill(channel: grpc.aio.Channel, defs: dict[str, list[str]]) -> float:
    """JOBS_PER_PAIR READY jobs per (namespace, kind): one CreateDag per
    namespace. Returns jobs/s."""
    dags = dag_pb2_grpc.DagServiceStub(channel)

    async def one(ns: str, def_ids: list[str]) -> None:
        specs = [
            dag_pb2.JobSpec(key=f"{kind}-{i}", def_id=def_id)
            for kind, def_id in zip(KINDS, def_ids, strict=True)
            for i in range(JOBS_PER_PAIR)
        ]
        await dags.CreateDag(dag_pb2.CreateDagRequest(namespace_id=ns, jobs=specs, start=True), timeout=60)

    started = time.perf_counter()
    await gather_some([functools.partial(one, ns, d) for ns, d in defs.items()])
    return len(defs) * len(KINDS) * JOBS_PER_PAIR / (time.perf_counter() - started)


async def many_table(target: Target, namespaces: int, count: int) -> dict[str, Row]:
    names = namespace_ids(namespaces)
    jobs = namespaces * len(KINDS) * JOBS_PER_PAIR
    t0 = time.monotonic()
    defs = await many_setup(target.channel, names)
    print(
        f"  {namespaces:,} namespaces with {len(KINDS)} definitions each"
        f" made in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    chrono = Chronosched(target.port, target.channel)
    one = "scale-one"
    await chrono.namespace(one)
    base_name = f"{jobs:,} jobs in one (namespace, kind)"
    all_name = f"{namespaces:,} namespaces x {len(KINDS)} kinds, all_namespaces"
    named_name = f"{namespaces:,} namespaces x {len(KINDS)} kinds, each namespace by name"

    async def base() -> Drain:
        await chrono.enqueue(one, jobs)
        await settle(target.url)
        return await drain(target, 1, jobs, ("--namespaces", one), ("noop",))

    async def many(subscription: Sequence[str]) -> Drain:
        rate = await many_fill(target.channel, defs)
        print(f"    (filled {jobs:,} jobs over {namespaces:,} namespaces at {rate:,.0f} jobs/s)", flush=True)
        await settle(target.url)
        return await drain(target, 1, jobs, subscription, KINDS)

    async def everywhere() -> Drain:
        return await many(("--all-namespaces",))

    async def by_name() -> Drain:
        return await many(("--namespaces", ",".join(names)))

    rows: dict[str, Row] = {}
    steps = [(base_name, base), (all_name, everywhere), (named_name, by_name)]
    await rounds(rows, steps, base_name, count, optional=(named_name,))
    return rows


# --- the run --------------------------------------------------------------------


@dataclass
class Plan:
    jobs: int
    backlog: int
    namespaces: int
    rounds: int
    backlog_rounds: int


def table(title: str, rows: dict[str, Row], baseline: str, label: str) -> None:
    print(f"\n{title}\n")
    print(
        f"| {label} | drain (jobs/s) | x baseline | cores busy: workers / server / PostgreSQL"
        " | CPU ms/job: workers / server / PostgreSQL |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        if row.failure:
            print(f"| {name} | FAILED: {row.failure.replace('|', '/')} | — | — | — |")
            continue
        ratio = "1.00x (baseline)" if name == baseline else times(row.ratios)
        print(
            f"| {name} | {spread([d.rate for d in row.drains])} | {ratio} | {cores(row)}"
            f" | {cpu_per_job(row)} |"
        )


def bar(text: str, rows: dict[str, Row], name: str, least: float) -> str:
    row = rows.get(name)
    if row is None or not row.ratios:
        return f"- {text}: not measured ({row.failure if row else 'no figures'})"
    v = statistics.median(row.ratios)
    return f"- {text}: {v:.2f} — {'met' if v >= least else 'NOT met'}"


async def run(plan: Plan) -> None:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{os.cpu_count()} cores ({affinity} usable by this process); load average"
        f" {os.getloadavg()[0]:.2f} at the start; {plan.rounds} rounds for tables 1 and 3,"
        f" {plan.backlog_rounds} for table 2",
        flush=True,
    )
    started = time.monotonic()
    async with database() as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            row = await (await conn.execute("show server_version")).fetchone()
            for name in ("scale_small", "scale_big"):
                await conn.execute(f"create database {name}")
        assert row is not None
        print(f"PostgreSQL {row[0]} (embedded, throwaway)", flush=True)
        small_url, big_url = database_url(url, "scale_small"), database_url(url, "scale_big")
        await migrate(small_url)
        await migrate(big_url)

        async with server_process(url) as (port, channel):
            target = await Target.of(port, channel, url)
            await warm_up(target)
            print(f"\n1. workers: {plan.jobs:,} jobs per drain", flush=True)
            workers = await workers_table(target, plan.jobs, plan.rounds)
            print(f"\n3. namespaces and kinds: {plan.namespaces:,} namespaces", flush=True)
            many = await many_table(target, plan.namespaces, plan.rounds)
        async with AsyncExitStack() as stack:
            small = await Target.of(*await stack.enter_async_context(server_process(small_url)), small_url)
            big = await Target.of(*await stack.enter_async_context(server_process(big_url)), big_url)
            print(f"\n2. backlog: {plan.backlog:,} jobs", flush=True)
            backlog = await backlog_table(small, big, plan.backlog, plan.backlog_rounds)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; {time.monotonic() - started:.0f} s in all")
    report(plan, workers, backlog, many)


def report(plan: Plan, workers: dict[str, Row], backlog: dict[str, Row], many: dict[str, Row]) -> None:
    print(
        "\nMedians over the rounds with (min-max); ratios are medians of same-round ratios;"
        " cores busy = CPU seconds / drain seconds, medians (worker processes summed;"
        " server and PostgreSQL with their children)."
    )
    first = next(iter(workers))
    table(
        f"1. Worker processes of {SLOTS} slots (and the control), one server, {plan.jobs:,} jobs per drain;"
        f" {os.cpu_count()} cores",
        workers,
        first,
        "worker processes",
    )
    base_backlog = next(iter(backlog))
    table(
        f"2. Backlog: one worker of {SLOTS} slots drains {SMALL_BACKLOG:,} jobs from the top of a backlog",
        backlog,
        base_backlog,
        "drain",
    )
    base_many = next(iter(many))
    table(
        f"3. Namespaces and kinds: one worker of {SLOTS} slots,"
        f" {plan.namespaces * len(KINDS) * JOBS_PER_PAIR:,} jobs per drain",
        many,
        base_many,
        "jobs",
    )
    names = list(backlog)
    many_names = list(many)
    print("\nThe bars (issue 14, item 5), this run:\n")
    for name in list(workers)[1:]:
        row = workers[name]
        v = statistics.median(row.ratios) if row.ratios else float("nan")
        what = (
            "no bar, one process with as many slots"
            if name.startswith(CONTROL)
            else "the bar: scale up to the CPU the machine has; see cores busy"
        )
        print(f"- {name} / 1 worker: {v:.2f}x ({what})")
    print(bar(f"{plan.backlog:,}-job backlog ≥ 0.8x a {SMALL_BACKLOG:,}-job backlog", backlog, names[1], 0.8))
    spread_text = f"{plan.namespaces:,} namespaces x {len(KINDS)} kinds, all_namespaces"
    print(bar(f"{spread_text} ≥ 0.8x one (namespace, kind)", many, many_names[1], 0.8))
    print(bar("the same, every namespace named ≥ 0.8x one (namespace, kind)", many, many_names[2], 0.8))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under three minutes")
    parser.add_argument("--jobs", type=int, help="table 1: jobs per drain (20,000; --quick 10,000)")
    parser.add_argument("--backlog", type=int, help="table 2: the big backlog (1,000,000; --quick 200,000)")
    parser.add_argument("--namespaces", type=int, help="table 3: namespaces (1,000; --quick 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds for tables 1 and 3")
    parser.add_argument("--backlog-rounds", type=int, default=3, help="rounds for table 2")
    args = parser.parse_args()
    plan = Plan(
        jobs=args.jobs or (10_000 if args.quick else 20_000),
        backlog=args.backlog or (200_000 if args.quick else 1_000_000),
        namespaces=args.namespaces or (200 if args.quick else 1_000),
        rounds=args.rounds,
        backlog_rounds=args.backlog_rounds,
    )
    if plan.jobs % 1000:
        parser.error("--jobs must be a multiple of 1,000 (CreateDag batches of 1,000)")
    if plan.backlog < SMALL_BACKLOG * (plan.backlog_rounds + 1):
        parser.error(f"--backlog must hold more than {plan.backlog_rounds + 1} drains of {SMALL_BACKLOG:,}")
    asyncio.run(run(plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
