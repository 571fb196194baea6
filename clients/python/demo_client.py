"""A guided tour of chronosched through the Python client.

    python3 clients/python/demo_client.py [--server HOST:PORT] [--rest URL]

Against a running stack whose workers serve the built-in `command` kind (a
local `chronosched up`, or `docker compose run client`), it walks through
the API and prints one line per step with what happened:

  1. a namespace (a fresh one per run, so the demo can run again and again);
  2. a job definition, and a second version of the same name;
  3. a DAG built step by step: CreateDag, CreateJobs, dependencies, and a
     dependency that would close a cycle, which the server refuses;
  4. the DAG started and watched until the workers have run every job;
  5. a job that fails its first attempt and succeeds on the retry;
  6. a cron definition firing every second, retired after three fires;
  7. the DAG read again over REST, through Envoy, to show both faces agree.

Every wait is bounded (STEP_TIMEOUT_S). The exit status is 0 when every step
did what it should, 1 (with the reason on stderr) when one did not, 2 for a
usage error. Times are printed in UTC. It uses only the `chronosched`
client package.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from chronosched import (
    ChronoschedError,
    Client,
    Dag,
    DagState,
    FailedPrecondition,
    FireStatus,
    Job,
    JobSpec,
    JobState,
)

T = TypeVar("T")

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_REST = "http://127.0.0.1:8080"
# The longest any one step may wait for the stack (a server still starting,
# jobs to run, cron fires) before the demo gives up.
STEP_TIMEOUT_S = 60.0
POLL_S = 0.2
# Cron fires the demo waits for before it retires the schedule.
CRON_FIRES = 3
# How long the retired schedule is watched for a fire that must not come: two
# ticks of an every-second schedule, and a reload of the schedulers' active
# set (once a second), would show in this time.
QUIET_S = 3.0


class DemoFailed(Exception):
    """A step did not do what the demo expected."""


def say(text: str) -> None:
    print(text, flush=True)


def wait_for(
    check: Callable[[], T | None],
    what: str,
    within: float | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call `check` until it returns a value; DemoFailed after `within` s
    (default STEP_TIMEOUT_S), with `detail()`, the last thing seen, in the
    message."""
    within = STEP_TIMEOUT_S if within is None else within
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            extra = f" (last: {detail()})" if detail is not None else ""
            raise DemoFailed(f"timed out after {within:g}s waiting for {what}{extra}")
        time.sleep(POLL_S)


def clock(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%H:%M:%S.%f")[:-3]


def stdout_of(job: Job) -> str:
    """What a command job printed (its result's stdout tail), on one line."""
    result = job.result or {}
    return str(result.get("stdout_tail", "")).strip().replace("\n", " | ")


def rest_get(base: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET base+path with urllib; (HTTP status, JSON body) also for 4xx/5xx."""
    request = urllib.request.Request(base.rstrip("/") + path, headers={"accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            body = response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {"raw": body.decode("utf-8", "replace")}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


class Demo:
    """The steps, in order; each prints its outcome or raises DemoFailed."""

    def __init__(self, client: Client, server: str, rest: str) -> None:
        self.client = client
        self.server = server
        self.rest = rest.rstrip("/")
        self.ns = f"demo-{uuid.uuid4().hex[:10]}"
        self.dag_id = ""

    def run(self) -> None:
        self.connect()
        self.namespace()
        say_def = self.definitions()
        self.build_dag(say_def)
        self.run_dag()
        self.retry()
        self.cron()
        self.rest_face()

    # --- 0: the stack is up ---------------------------------------------------

    def connect(self) -> None:
        quick = self.client.with_options(timeout=2.0)
        last: list[str] = ["no answer yet"]

        def healthy() -> str | None:
            try:
                return quick.healthz().version
            except ChronoschedError as exc:
                last[0] = str(exc)
                return None

        version = wait_for(healthy, f"the server at {self.server} to be healthy", detail=lambda: last[0])
        say(f"[0] server {self.server} is healthy (version {version})")

        def rest_up() -> int | None:
            try:
                status, _ = rest_get(self.rest, "/healthz")
            except OSError as exc:
                last[0] = str(exc)
                return None
            last[0] = f"HTTP {status}"
            return status if status == 200 else None

        wait_for(rest_up, f"REST at {self.rest}/healthz to answer 200", detail=lambda: last[0])
        say(f"[0] REST face {self.rest} answers /healthz with 200")

    # --- 1 ---------------------------------------------------------------------

    def namespace(self) -> None:
        created = self.client.create_namespace(self.ns, "made by clients/python/demo_client.py")
        say(f"[1] namespace {created.namespace_id} created at {clock(created.create_time)}")

    # --- 2 ---------------------------------------------------------------------

    def definitions(self) -> str:
        first = self.client.create_definition(self.ns, "say", "command", {"argv": ["echo", "version 1"]})
        second = self.client.create_definition(
            self.ns, "say", "command", {"argv": ["echo", "hello from version 2"]}, max_attempts=3
        )
        if (first.version, second.version) != (1, 2):
            raise DemoFailed(f"expected versions 1 and 2 of 'say', got {first.version} and {second.version}")
        say(f"[2] definition say version {first.version} created (def_id {first.def_id}, kind {first.kind})")
        say(
            f"[2] the same name again made say version {second.version} (def_id {second.def_id}); "
            f"version 1 stays as it was"
        )
        return second.def_id

    # --- 3 ---------------------------------------------------------------------

    def build_dag(self, def_id: str) -> None:
        dag = self.client.create_dag(self.ns, "demo-pipeline")
        self.dag_id = dag.dag_id
        if dag.state is not DagState.PENDING:
            raise DemoFailed(f"a new DAG should be PENDING, it is {dag.state.name}")
        say(f"[3] DAG demo-pipeline created: {dag.dag_id}, state {dag.state.name}, no jobs yet")

        specs = [
            JobSpec("extract", def_id, payload={"argv": ["echo", "extract: 3 rows"]}),
            JobSpec("transform", def_id, payload={"argv": ["echo", "transform: 3 rows cleaned"]}),
            JobSpec("load", def_id),  # the template's argv: echo "hello from version 2"
        ]
        jobs = self.client.add_jobs(self.ns, dag.dag_id, specs)
        ids = {job.key: job.job_id for job in jobs}
        if sorted(ids) != ["extract", "load", "transform"]:
            raise DemoFailed(f"CreateJobs returned the wrong jobs: {sorted(ids)}")
        states = ", ".join(f"{job.key} {job.state.name}" for job in jobs)
        say(f"[3] CreateJobs added {len(jobs)} jobs: {states}")

        self.client.add_dependency(self.ns, dag.dag_id, ids["extract"], ids["transform"])
        self.client.add_dependencies(self.ns, dag.dag_id, [(ids["transform"], ids["load"])])
        edges = self.client.list_dependencies(self.ns, dag.dag_id)
        names = {job_id: key for key, job_id in ids.items()}
        wired = sorted(f"{names[e.parent_job_id]} -> {names[e.child_job_id]}" for e in edges)
        if wired != ["extract -> transform", "transform -> load"]:
            raise DemoFailed(f"the DAG's edges are {wired}")
        say(f"[3] dependencies wired: extract -> transform -> load ({len(wired)} edges)")

        try:
            self.client.add_dependency(self.ns, dag.dag_id, ids["load"], ids["extract"])
        except FailedPrecondition as exc:
            if exc.reason != "CYCLE_DETECTED":
                raise DemoFailed(f"the cycle was refused for another reason: {exc}") from exc
            say(f"[3] load -> extract would close a cycle; the server refused it: {exc}")
        else:
            raise DemoFailed("the server accepted load -> extract, which closes a cycle")

    # --- 4 ---------------------------------------------------------------------

    def run_dag(self) -> None:
        started = self.client.start_dag(self.ns, self.dag_id)
        say(f"[4] DAG started: state {started.state.name}; the workers take over")
        seen: dict[str, tuple[JobState, int]] = {}
        dag_state: list[DagState] = [started.state]

        def settled() -> Dag | None:
            dag = self.client.get_dag(self.ns, self.dag_id)
            for job in sorted(self.client.list_dag_jobs(self.ns, self.dag_id), key=lambda j: j.key):
                now = (job.state, job.attempt)
                if seen.get(job.key) != now:
                    before = seen[job.key][0].name if job.key in seen else "new"
                    say(f"[4]   job {job.key}: {before} -> {job.state.name} (attempt {job.attempt})")
                    seen[job.key] = now
            if dag.state is not dag_state[0]:
                say(f"[4]   dag: {dag_state[0].name} -> {dag.state.name}")
                dag_state[0] = dag.state
            return dag if dag.is_settled else None

        dag = wait_for(settled, "the DAG to finish")
        jobs = {job.key: job for job in self.client.list_dag_jobs(self.ns, self.dag_id)}
        if dag.state is not DagState.SUCCEEDED or any(
            j.state is not JobState.SUCCEEDED for j in jobs.values()
        ):
            states = {key: job.state.name for key, job in jobs.items()}
            raise DemoFailed(f"the DAG ended {dag.state.name} with jobs {states}")
        order = sorted(jobs.values(), key=lambda j: j.end_time or dag.create_time)
        if [j.key for j in order] != ["extract", "transform", "load"]:
            raise DemoFailed(f"jobs finished out of order: {[j.key for j in order]}")
        say(
            f"[4] DAG SUCCEEDED: {', '.join(j.key for j in order)} ran in order; "
            + "; ".join(f"{j.key} printed {stdout_of(j)!r} on {j.worker_id}" for j in order)
        )

    # --- 5 ---------------------------------------------------------------------

    def retry(self) -> None:
        # The worker gives every command CHRONOSCHED_JOB_ATTEMPT: this one
        # fails on attempt 1 and succeeds on attempt 2.
        script = (
            'echo "attempt $CHRONOSCHED_JOB_ATTEMPT"; '
            'if [ "$CHRONOSCHED_JOB_ATTEMPT" -lt 2 ]; then echo "failing on purpose" >&2; exit 1; fi'
        )
        flaky = self.client.create_definition(
            self.ns,
            "flaky",
            "command",
            {"argv": ["sh", "-c", script]},
            max_attempts=2,
            backoff_initial=timedelta(seconds=1),
        )
        job = self.client.tick(self.ns, flaky.def_id)
        say(f"[5] definition flaky (max_attempts {flaky.max_attempts}) ticked: job {job.job_id}")
        seen: list[tuple[JobState, int]] = []

        def finished() -> Job | None:
            now = self.client.get_job(self.ns, job.job_id)
            if not seen or seen[-1] != (now.state, now.attempt):
                seen.append((now.state, now.attempt))
                line = f"[5]   job flaky: {now.state.name} (attempt {now.attempt})"
                if now.state is JobState.READY and now.attempt > 1 and now.error:
                    line += f", after attempt {now.attempt - 1} FAILED: {now.error.strip()}"
                say(line)
            return now if now.state.is_finished else None

        done = wait_for(finished, "the flaky job to finish")
        if done.state is not JobState.SUCCEEDED or done.attempt != 2:
            raise DemoFailed(f"the flaky job ended {done.state.name} at attempt {done.attempt}: {done.error}")
        if not done.error:
            raise DemoFailed("the flaky job succeeded without a failed attempt on record")
        say(
            f"[5] attempt 1 FAILED ({done.error.strip()}), was retried, and attempt {done.attempt} "
            f"SUCCEEDED printing {stdout_of(done)!r}"
        )

    # --- 6 ---------------------------------------------------------------------

    def cron(self) -> None:
        beat = self.client.create_definition(
            self.ns, "heartbeat", "command", {"argv": ["echo", "beat"]}, cron_spec="* * * * * *"
        )
        upcoming = ", ".join(clock(t) for t in beat.next_fire_times[:3])
        say(f"[6] cron definition heartbeat ({beat.cron_spec}: every second) created; next fires {upcoming}")
        reported: set[str] = set()

        def fired_and_ran() -> int | None:
            fires = [f for f in self.client.list_fires(self.ns, beat.def_id) if f.status is FireStatus.FIRED]
            jobs = {j.job_id: j for j in self.client.list_jobs(self.ns, def_id=beat.def_id)}
            done = 0
            for fire in sorted(fires, key=lambda f: f.scheduled_time):
                job = jobs.get(fire.job_id or "")
                if job is not None and job.state is JobState.SUCCEEDED:
                    done += 1
                    if job.job_id not in reported:
                        reported.add(job.job_id)
                        say(
                            f"[6]   tick {clock(fire.scheduled_time)} fired job {job.job_id}: "
                            f"SUCCEEDED, printed {stdout_of(job)!r}"
                        )
            return done if done >= CRON_FIRES else None

        count = wait_for(fired_and_ran, f"{CRON_FIRES} cron fires whose jobs succeeded")
        retired = self.client.retire_definition(self.ns, beat.def_id)
        if retired.retire_time is None:
            raise DemoFailed("RetireDefinition returned a version without retire_time")
        before = list(self.client.list_fires(self.ns, beat.def_id))
        say(
            f"[6] {count} fires ran; definition heartbeat retired at {clock(retired.retire_time)} "
            f"with {len(before)} fires in the ledger"
        )
        time.sleep(QUIET_S)  # the point is that nothing happens meanwhile
        after = list(self.client.list_fires(self.ns, beat.def_id))
        late = [f for f in after if f.fire_time >= retired.retire_time]
        if len(after) != len(before) or late:
            raise DemoFailed(
                f"the retired schedule kept firing: {len(before)} fires at the retire, {len(after)} "
                f"{QUIET_S:g}s later ({len(late)} recorded after the retire)"
            )
        schedule = self.client.get_schedule(self.ns, "heartbeat")
        if schedule.retire_time is None or schedule.next_fire_times:
            raise DemoFailed(f"the retired schedule still looks live: {schedule}")
        say(
            f"[6] retired schedule stopped: no fire in {QUIET_S:g}s after the retire, "
            f"still {len(after)} in the ledger, no next fire times"
        )

    # --- 7 ---------------------------------------------------------------------

    def rest_face(self) -> None:
        path = f"/api/v1/dags/{self.ns}/{self.dag_id}"
        status, body = rest_get(self.rest, path)
        dag = self.client.get_dag(self.ns, self.dag_id)
        if status != 200:
            raise DemoFailed(f"GET {self.rest}{path} answered {status}: {body}")
        grpc_view = (f"STATE_{dag.state.name}", str(dag.job_count))
        rest_view = (body.get("state"), str(body.get("job_count")))
        if rest_view != grpc_view or body.get("dag_id") != self.dag_id:
            raise DemoFailed(f"REST says {rest_view}, gRPC says {grpc_view}")
        say(
            f"[7] REST GET {path} -> {status}: state {rest_view[0]}, job_count {rest_view[1]} "
            f"(gRPC: {dag.state.name}, {dag.job_count})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="demo_client.py", description="A guided tour of chronosched through the Python client."
    )
    parser.add_argument("--server", default=DEFAULT_SERVER, help=f"gRPC HOST:PORT (default {DEFAULT_SERVER})")
    parser.add_argument("--rest", default=DEFAULT_REST, help=f"REST base URL, Envoy (default {DEFAULT_REST})")
    args = parser.parse_args(argv)

    with Client(args.server, timeout=30.0) as client:
        demo = Demo(client, args.server, args.rest)
        say(f"chronosched demo: server {args.server}, REST {args.rest}, namespace {demo.ns}")
        try:
            demo.run()
        except DemoFailed as exc:
            print(f"demo FAILED: {exc}", file=sys.stderr, flush=True)
            return 1
        except ChronoschedError as exc:
            print(f"demo FAILED: the server answered {exc}", file=sys.stderr, flush=True)
            return 1
    say(f"demo finished: every step did what it should (namespace {demo.ns} is left for you to look at)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
