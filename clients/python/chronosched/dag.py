"""The DAG builder and the handle on a submitted DAG.

    dag = client.dag("team-a", "etl")
    extract = dag.job("extract", "say")            # latest version of "say"
    a, b = dag.job("a", "say@2"), dag.job("b", def_id)
    load = dag.job("load", "say", payload={"argv": ["echo", "load"]})
    extract >> [a, b] >> load                      # fan-out, then fan-in
    run = dag.submit()                             # one CreateDag call, started
    result = run.wait()                            # the settled DAG and its jobs

`submit` resolves definition names to def_ids first (one ListDefinitions per
distinct name), then creates the DAG with its whole topology in one
CreateDag call. The server checks the topology (keys, self-edges, cycles);
its InvalidArgument / FailedPrecondition comes back as is. The builder only
refuses what it can see alone: a key used twice, a job of another builder.

The same builder and handle exist for the AsyncClient (`AsyncDagBuilder`,
`AsyncDagRun`), whose `submit`, `wait` and other calls are awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from chronosched._calls import DefinitionRef, ParsedRef, parse_ref
from chronosched.types import Dag, DagEvent, DagResult, Job, JobEvent, JobSpec, WatchEvent

if TYPE_CHECKING:
    from chronosched._async import AsyncClient
    from chronosched.client import Client

__all__ = ["AsyncDagBuilder", "AsyncDagRun", "DagBuilder", "DagRun", "JobNode"]

#: How often `wait` and `watch` poll the server by default, in seconds.
DEFAULT_POLL_INTERVAL = 0.5

_W = TypeVar("_W", bound="JobNode | Sequence[JobNode]")


class JobNode:
    """A job declared on a builder. `a >> b` makes `b` wait for `a`; either
    side may be a list (`a >> [b, c]`, `[b, c] >> d`), and the expression
    is the right-hand side, so chains read left to right:
    `a >> [b, c] >> d`. (A list on both sides is not supported: Python lists
    have no `>>`; write a loop.)"""

    __slots__ = ("_builder", "definition", "key", "payload", "priority")

    def __init__(
        self,
        builder: _Builder,
        key: str,
        definition: DefinitionRef,
        payload: Mapping[str, Any] | None,
        priority: int | None,
    ) -> None:
        self._builder = builder
        #: The job's key, unique in its DAG.
        self.key = key
        #: How the job names its definition (resolved at submit).
        self.definition = definition
        #: Merged over the definition's payload template.
        self.payload = payload
        #: None means the definition's default priority.
        self.priority = priority

    def __rshift__(self, children: _W) -> _W:
        self._builder._wire([self], _nodes(children))
        return children

    def __rrshift__(self, parents: Sequence[JobNode]) -> JobNode:
        self._builder._wire(_nodes(parents), [self])
        return self

    def __repr__(self) -> str:
        return f"JobNode({self.key!r}, {self.definition!r})"


def _nodes(value: object) -> list[JobNode]:
    if isinstance(value, JobNode):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, JobNode) for v in value):
        return list(value)
    raise TypeError(f"only jobs of a DAG builder (or lists of them) can be wired with >>, not {value!r}")


class _Builder:
    """What both builders share: the declared jobs and edges."""

    def __init__(self, namespace_id: str, name: str) -> None:
        #: The namespace the DAG is created in.
        self.namespace_id = namespace_id
        #: The DAG's name, for humans.
        self.name = name
        self._jobs: dict[str, JobNode] = {}
        # Insertion-ordered and free of repeats: wiring `a >> b` twice is one edge.
        self._edges: dict[tuple[str, str], None] = {}
        self._submitted: str | None = None

    @property
    def jobs(self) -> tuple[JobNode, ...]:
        """The jobs declared so far, in declaration order."""
        return tuple(self._jobs.values())

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """The (parent key, child key) edges wired so far."""
        return tuple(self._edges)

    def job(
        self,
        key: str,
        definition: DefinitionRef,
        *,
        payload: Mapping[str, Any] | None = None,
        priority: int | None = None,
    ) -> JobNode:
        """Declare a job. `definition` is a def_id (UUID), `name@version`, a
        bare name (its latest version at submit time) or a `Definition`.
        ValueError if `key` is already used in this builder."""
        self._check_open()
        if not isinstance(key, str):
            raise TypeError(f"a job key is a string, not {key!r}")
        if key in self._jobs:
            raise ValueError(f"job key {key!r} is already used in this DAG")
        parse_ref(definition)  # a malformed reference fails here, where it was written
        node = JobNode(self, key, definition, payload, priority)
        self._jobs[key] = node
        return node

    def depend(self, parent: JobNode, child: JobNode) -> None:
        """Make `child` wait for `parent` (the same as `parent >> child`)."""
        self._wire([parent], [child])

    def _wire(self, parents: Iterable[JobNode], children: Iterable[JobNode]) -> None:
        self._check_open()
        parents, children = list(parents), list(children)
        for node in parents + children:
            if node._builder is not self or self._jobs.get(node.key) is not node:
                raise ValueError(f"job {node.key!r} belongs to another DAG builder")
        for parent in parents:
            for child in children:
                self._edges[(parent.key, child.key)] = None

    def _check_open(self) -> None:
        if self._submitted is not None:
            raise ValueError(
                f"this builder was submitted as DAG {self._submitted}; make a new one to change it"
            )

    def _references(self) -> dict[ParsedRef, DefinitionRef]:
        """Each distinct definition reference, as first written."""
        found: dict[ParsedRef, DefinitionRef] = {}
        for node in self._jobs.values():
            found.setdefault(parse_ref(node.definition), node.definition)
        return found

    def _specs(self, def_ids: Mapping[ParsedRef, str]) -> list[JobSpec]:
        return [
            JobSpec(
                key=node.key,
                def_id=def_ids[parse_ref(node.definition)],
                payload=node.payload,
                priority=node.priority,
            )
            for node in self._jobs.values()
        ]


class DagBuilder(_Builder):
    """Builds a DAG for `Client.dag`; see the module's docstring."""

    def __init__(self, client: Client, namespace_id: str, name: str = "") -> None:
        super().__init__(namespace_id, name)
        self._client = client

    def submit(self, *, start: bool = True, request_id: str | None = None) -> DagRun:
        """Create the DAG with all its jobs and edges in one CreateDag call
        (started unless `start=False`) and return a handle on it. Names are
        resolved to def_ids first. After it succeeded the builder is sealed."""
        self._check_open()
        def_ids: dict[ParsedRef, str] = {}
        for parsed, ref in self._references().items():
            if parsed.def_id is not None:
                def_ids[parsed] = parsed.def_id
            else:
                def_ids[parsed] = self._client.resolve_definition(self.namespace_id, ref).def_id
        dag = self._client.create_dag(
            self.namespace_id,
            self.name,
            self._specs(def_ids),
            self.edges,
            start=start,
            request_id=request_id,
        )
        self._submitted = dag.dag_id
        return DagRun(self._client, dag)


class AsyncDagBuilder(_Builder):
    """Builds a DAG for `AsyncClient.dag`; `submit` is awaited."""

    def __init__(self, client: AsyncClient, namespace_id: str, name: str = "") -> None:
        super().__init__(namespace_id, name)
        self._client = client

    async def submit(self, *, start: bool = True, request_id: str | None = None) -> AsyncDagRun:
        """Create the DAG with all its jobs and edges in one CreateDag call
        (started unless `start=False`) and return a handle on it. Names are
        resolved to def_ids first. After it succeeded the builder is sealed."""
        self._check_open()
        def_ids: dict[ParsedRef, str] = {}
        for parsed, ref in self._references().items():
            if parsed.def_id is not None:
                def_ids[parsed] = parsed.def_id
            else:
                def_ids[parsed] = (await self._client.resolve_definition(self.namespace_id, ref)).def_id
        dag = await self._client.create_dag(
            self.namespace_id,
            self.name,
            self._specs(def_ids),
            self.edges,
            start=start,
            request_id=request_id,
        )
        self._submitted = dag.dag_id
        return AsyncDagRun(self._client, dag)


class _Changes:
    """Turns successive looks at a DAG into events: a job is reported the
    first time it is seen and whenever its state or attempt differs from the
    previous look; the DAG whenever its state does. Within one look, jobs
    come in key order and the DAG last."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._dag: Dag | None = None

    def after(self, dag: Dag, jobs: Iterable[Job]) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        for job in sorted(jobs, key=lambda j: j.key):
            before = self._jobs.get(job.key)
            if before is None or (before.state, before.attempt) != (job.state, job.attempt):
                events.append(JobEvent(job, before))
            self._jobs[job.key] = job
        if self._dag is None or self._dag.state is not dag.state:
            events.append(DagEvent(dag, self._dag))
        self._dag = dag
        return events


def _timed_out(dag: Dag, timeout: float) -> TimeoutError:
    return TimeoutError(
        f"DAG {dag.dag_id} did not settle within {timeout:g}s"
        f" (state {dag.state.name}, {dag.unfinished_job_count} of {dag.job_count} jobs unfinished)"
    )


class DagRun:
    """A handle on one DAG: follow it (`wait`, `watch`) and act on it."""

    def __init__(self, client: Client, dag: Dag) -> None:
        self._client = client
        #: The DAG as last seen (by creation, `refresh`, `wait` or `watch`).
        self.dag = dag

    @property
    def dag_id(self) -> str:
        """The DAG's id."""
        return self.dag.dag_id

    @property
    def namespace_id(self) -> str:
        """The DAG's namespace."""
        return self.dag.namespace_id

    def __repr__(self) -> str:
        return f"DagRun({self.namespace_id!r}, {self.dag_id!r}, {self.dag.state.name})"

    def refresh(self) -> Dag:
        """Read the DAG again."""
        self.dag = self._client.get_dag(self.namespace_id, self.dag_id)
        return self.dag

    def jobs(self) -> dict[str, Job]:
        """Every job of the DAG, by key."""
        return {job.key: job for job in self._client.list_dag_jobs(self.namespace_id, self.dag_id)}

    def edges(self) -> set[tuple[str, str]]:
        """The DAG's edges as the server stored them, as (parent key, child key)."""
        keys = {job.job_id: key for key, job in self.jobs().items()}
        return {
            (keys[d.parent_job_id], keys[d.child_job_id])
            for d in self._client.list_dependencies(self.namespace_id, self.dag_id)
        }

    def start(self) -> Dag:
        """Start a DAG submitted with `start=False`."""
        self.dag = self._client.start_dag(self.namespace_id, self.dag_id)
        return self.dag

    def cancel(self) -> Dag:
        """Cancel every unfinished job."""
        self.dag = self._client.cancel_dag(self.namespace_id, self.dag_id)
        return self.dag

    def delete(self) -> None:
        """Cancel and remove the DAG."""
        self._client.delete_dag(self.namespace_id, self.dag_id)

    def wait(self, timeout: float | None = None, *, interval: float = DEFAULT_POLL_INTERVAL) -> DagResult:
        """Poll the DAG every `interval` seconds until it settles (terminal,
        with no job unfinished; see `Dag.is_settled`) and return it with each
        job's final state. TimeoutError after `timeout` seconds (None: wait
        as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if self.dag.is_settled:
                return DagResult(self.dag, self.jobs())
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timed_out(self.dag, timeout or 0.0)
                time.sleep(min(interval, left))
            else:
                time.sleep(interval)

    def watch(self, *, interval: float = DEFAULT_POLL_INTERVAL) -> Iterator[WatchEvent]:
        """Yield a `JobEvent` whenever a job is seen in a new state (or a new
        attempt) and a `DagEvent` whenever the DAG is, polling every
        `interval` seconds; the first look reports every job and the DAG.
        Ends after the look that finds the DAG settled. The API has no
        stream of changes, so a job that passes through a state between two
        looks (READY -> RUNNING -> SUCCEEDED) is reported in the state seen."""
        changes = _Changes()
        while True:
            dag = self.refresh()
            # The DAG is read before its jobs: once it is settled, the jobs
            # read after it are final.
            yield from changes.after(dag, self._client.list_dag_jobs(self.namespace_id, self.dag_id))
            if dag.is_settled:
                return
            time.sleep(interval)


class AsyncDagRun:
    """A handle on one DAG for the AsyncClient: follow it and act on it."""

    def __init__(self, client: AsyncClient, dag: Dag) -> None:
        self._client = client
        #: The DAG as last seen (by creation, `refresh`, `wait` or `watch`).
        self.dag = dag

    @property
    def dag_id(self) -> str:
        """The DAG's id."""
        return self.dag.dag_id

    @property
    def namespace_id(self) -> str:
        """The DAG's namespace."""
        return self.dag.namespace_id

    def __repr__(self) -> str:
        return f"AsyncDagRun({self.namespace_id!r}, {self.dag_id!r}, {self.dag.state.name})"

    async def refresh(self) -> Dag:
        """Read the DAG again."""
        self.dag = await self._client.get_dag(self.namespace_id, self.dag_id)
        return self.dag

    async def jobs(self) -> dict[str, Job]:
        """Every job of the DAG, by key."""
        return {job.key: job async for job in self._client.list_dag_jobs(self.namespace_id, self.dag_id)}

    async def edges(self) -> set[tuple[str, str]]:
        """The DAG's edges as the server stored them, as (parent key, child key)."""
        keys = {job.job_id: key for key, job in (await self.jobs()).items()}
        return {
            (keys[d.parent_job_id], keys[d.child_job_id])
            async for d in self._client.list_dependencies(self.namespace_id, self.dag_id)
        }

    async def start(self) -> Dag:
        """Start a DAG submitted with `start=False`."""
        self.dag = await self._client.start_dag(self.namespace_id, self.dag_id)
        return self.dag

    async def cancel(self) -> Dag:
        """Cancel every unfinished job."""
        self.dag = await self._client.cancel_dag(self.namespace_id, self.dag_id)
        return self.dag

    async def delete(self) -> None:
        """Cancel and remove the DAG."""
        await self._client.delete_dag(self.namespace_id, self.dag_id)

    # `timeout` as in DagRun.wait, so the two handles read the same;
    # asyncio.timeout() around the call works too.
    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> DagResult:
        """Poll the DAG every `interval` seconds until it settles (terminal,
        with no job unfinished) and return it with each job's final state.
        TimeoutError after `timeout` seconds (None: as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh()
            if self.dag.is_settled:
                return DagResult(self.dag, await self.jobs())
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timed_out(self.dag, timeout or 0.0)
                await asyncio.sleep(min(interval, left))
            else:
                await asyncio.sleep(interval)

    async def watch(self, *, interval: float = DEFAULT_POLL_INTERVAL) -> AsyncIterator[WatchEvent]:
        """Yield a `JobEvent` whenever a job is seen in a new state (or a new
        attempt) and a `DagEvent` whenever the DAG is, polling every
        `interval` seconds; ends after the look that finds the DAG settled.
        Use as `async for event in run.watch(): ...`."""
        changes = _Changes()
        while True:
            dag = await self.refresh()
            jobs = [job async for job in self._client.list_dag_jobs(self.namespace_id, self.dag_id)]
            for event in changes.after(dag, jobs):
                yield event
            if dag.is_settled:
                return
            await asyncio.sleep(interval)
