"""Storage records -> protobuf messages: the one place a record is rendered,
used by the API servicers and the dispatcher alike (so it sits below both)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from chronosched.v1 import (
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
    token_pb2,
    worker_pb2,
)
from chronosched_server import cron, waiting
from chronosched_server.storage import records

log = logging.getLogger(__name__)

NEXT_FIRE_COUNT = 5

MISFIRE = {
    "skip": definition_pb2.JobDefinition.MISFIRE_POLICY_SKIP,
    "fire_once": definition_pb2.JobDefinition.MISFIRE_POLICY_FIRE_ONCE,
}
OVERLAP = {
    "allow": definition_pb2.JobDefinition.OVERLAP_POLICY_ALLOW,
    "forbid": definition_pb2.JobDefinition.OVERLAP_POLICY_FORBID,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    _set_ts(out, value)
    return out


def _set_ts(out: timestamp_pb2.Timestamp, value: datetime) -> None:
    # Integer arithmetic on the aware datetime: exact, and a third of the
    # cost of Timestamp.FromDatetime, which every assignment pays five times.
    seconds, micros = divmod((value - _EPOCH) // _MICROSECOND, 1_000_000)
    out.seconds = seconds
    out.nanos = micros * 1000


def dur(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def namespace(row: records.Namespace) -> namespace_pb2.Namespace:
    return namespace_pb2.Namespace(
        namespace_id=row.namespace_id, description=row.description, create_time=ts(row.create_time)
    )


def definition(row: records.Definition) -> definition_pb2.JobDefinition:
    fires: list[timestamp_pb2.Timestamp] = []
    if row.cron_spec and row.retire_time is None:
        schedule = cron.parse_schedule(row.cron_spec, row.time_zone)
        fires = [ts_ for t in schedule.next_times(row.as_of, NEXT_FIRE_COUNT) if (ts_ := ts(t))]
    return definition_pb2.JobDefinition(
        def_id=str(row.def_id),
        namespace_id=row.namespace_id,
        name=row.name,
        version=row.version,
        kind=row.kind,
        payload_template=struct(row.payload_template),
        cron_spec=row.cron_spec,
        time_zone=row.time_zone,
        misfire_policy=MISFIRE[row.misfire_policy],
        overlap_policy=OVERLAP[row.overlap_policy],
        starting_deadline=dur(row.starting_deadline),
        max_attempts=row.max_attempts,
        backoff_initial=dur(row.backoff_initial),
        backoff_max=dur(row.backoff_max),
        backoff_multiplier=row.backoff_multiplier,
        execution_timeout=dur(row.execution_timeout),
        default_priority=row.default_priority,
        delay_after_parents=dur(row.delay_after_parents),
        create_time=ts(row.create_time),
        next_fire_times=fires,
        retire_time=ts(row.retire_time),
    )


def dag(row: records.Dag) -> dag_pb2.Dag:
    return dag_pb2.Dag(
        dag_id=str(row.dag_id),
        namespace_id=row.namespace_id,
        name=row.name,
        state=dag_pb2.Dag.State.Value("STATE_" + row.state),
        job_count=row.job_count,
        unfinished_job_count=row.unfinished_job_count,
        create_time=ts(row.create_time),
        start_time=ts(row.start_time),
        end_time=ts(row.end_time),
        update_time=ts(row.update_time),
    )


_JOB_STATES = {
    name.removeprefix("STATE_"): number
    for name, number in job_pb2.Job.State.items()
    if name != "STATE_UNSPECIFIED"
}


def job(row: records.Job, facts: waiting.Facts | None = None) -> job_pb2.Job:
    """The job; with `facts` (read with it), also why it waits, if it does."""
    out = job_pb2.Job()
    fill_job(out, row)
    if facts is not None and (explained := waiting.explain(row, facts)) is not None:
        out.waiting.CopyFrom(_waiting(explained))
    return out


def fill_job(out: job_pb2.Job, row: records.Job) -> None:
    """Write the job into an empty message in place: the dispatcher renders
    every assignment straight into its frame this way, which costs about two
    thirds of building a Job and copying it in (each sub-message given to a
    constructor is copied)."""
    out.job_id = str(row.job_id)
    out.namespace_id = row.namespace_id
    if row.dag_id is not None:
        out.dag_id = str(row.dag_id)
    out.def_id = str(row.def_id)
    out.def_version = row.def_version
    out.kind = row.kind
    out.key = row.key
    out.state = _JOB_STATES[row.state]
    out.attempt = row.attempt
    out.max_attempts = row.max_attempts
    out.priority = row.priority
    if row.payload is not None:
        out.payload.SetInParent()
        out.payload.update(row.payload)
    if row.result is not None:
        out.result.SetInParent()
        out.result.update(row.result)
    out.error = row.error
    for value, field in (
        (row.due_time, out.due_time),
        (row.create_time, out.create_time),
        (row.start_time, out.start_time),
        (row.end_time, out.end_time),
        (row.update_time, out.update_time),
        (row.lease_expire_time, out.lease_expire_time),
    ):
        if value is not None:
            _set_ts(field, value)
    out.worker_id = row.worker_id


def _waiting(e: waiting.Explanation) -> job_pb2.Waiting:
    return job_pb2.Waiting(
        reason=job_pb2.Waiting.Reason.Value("REASON_" + e.reason.value),
        message=e.message,
        unfinished_parents=e.unfinished_parents,
        parents=[
            job_pb2.WaitingParent(
                key=p.key, job_id=str(p.job_id), state=job_pb2.Job.State.Value("STATE_" + p.state)
            )
            for p in e.parents
        ],
        due_time=ts(e.due_time),
        retry_after_attempt=e.retry_after_attempt,
        kind=e.kind,
        slots_in_use=e.slots_in_use,
        slots_total=e.slots_total,
    )


def dependency(row: records.Dependency) -> dag_pb2.Dependency:
    return dag_pb2.Dependency(parent_job_id=str(row.parent_job_id), child_job_id=str(row.child_job_id))


def fire(row: records.Fire) -> schedule_pb2.Fire:
    return schedule_pb2.Fire(
        namespace_id=row.namespace_id,
        name=row.name,
        def_id=str(row.def_id),
        def_version=row.def_version,
        scheduled_time=ts(row.scheduled_time),
        fire_time=ts(row.fire_time),
        status=schedule_pb2.Fire.Status.Value("STATUS_" + row.status),
        reason=row.reason,
        job_id=str(row.job_id) if row.job_id else "",
    )


def schedule(row: records.Schedule) -> schedule_pb2.Schedule:
    fires: list[timestamp_pb2.Timestamp] = []
    if row.cron_spec and not row.paused and row.retire_time is None:
        parsed = cron.parse_schedule(row.cron_spec, row.time_zone)
        fires = [ts_ for t in parsed.next_times(row.as_of, NEXT_FIRE_COUNT) if (ts_ := ts(t))]
    return schedule_pb2.Schedule(
        namespace_id=row.namespace_id,
        name=row.name,
        paused=row.paused,
        def_id=str(row.def_id),
        def_version=row.version,
        cron_spec=row.cron_spec,
        time_zone=row.time_zone,
        next_fire_times=fires,
        pause_time=ts(row.paused_at),
        resume_time=ts(row.resumed_at),
        retire_time=ts(row.retire_time),
    )


TOKEN_SCOPE = {
    "read": token_pb2.Token.SCOPE_READ,
    "write": token_pb2.Token.SCOPE_WRITE,
    "worker": token_pb2.Token.SCOPE_WORKER,
    "admin": token_pb2.Token.SCOPE_ADMIN,
}


def token(row: records.Token) -> token_pb2.Token:
    return token_pb2.Token(
        token_id=row.token_id,
        scope=TOKEN_SCOPE[row.scope],
        # Every namespace is `*` on the wire (a null namespace in the table).
        namespace_id="*" if row.namespace_id is None else row.namespace_id,
        description=row.description,
        create_time=ts(row.create_time),
        expire_time=ts(row.expire_time),
        revoke_time=ts(row.revoke_time),
        last_used_time=ts(row.last_used_time),
    )


def connected_worker(row: records.WorkerPresence, only: str | None = None) -> worker_pb2.ConnectedWorker:
    """`only`: the one namespace the caller may see; the worker's others are left out."""
    shown = [n for n in row.namespaces if only is None or n == only]
    return worker_pb2.ConnectedWorker(
        worker_id=row.worker_id,
        stream_id=str(row.stream_id),
        replica_id=row.replica_id,
        namespaces=shown,
        all_namespaces=row.all_namespaces,
        kinds=row.kinds,
        slots=row.slots,
        jobs_in_flight=row.jobs_in_flight,
        connect_time=ts(row.connect_time),
        heartbeat_time=ts(row.heartbeat_time),
    )
