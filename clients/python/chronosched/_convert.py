"""Protobuf messages <-> the client's dataclasses (chronosched.types)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from chronosched.types import (
    ConnectedWorker,
    Dag,
    DagState,
    Definition,
    Dependency,
    Fire,
    FireStatus,
    Job,
    JobState,
    MisfirePolicy,
    Namespace,
    OverlapPolicy,
    Schedule,
    Token,
    TokenScope,
    Waiting,
    WaitingParent,
    WaitingReason,
)
from chronosched.v1 import (
    dag_pb2,
    definition_pb2,
    job_pb2,
    namespace_pb2,
    schedule_pb2,
    token_pb2,
    worker_pb2,
)

# The largest magnitude at which every whole double is an exact integer.
_EXACT = 2**53

#: A duration argument: a timedelta, or seconds.
Seconds = timedelta | float | int


# --- into messages ------------------------------------------------------------


def struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    """A JSON object as a Struct; None stays unset. Raises TypeError/ValueError
    for a value JSON cannot hold."""
    if values is None:
        return None
    if not isinstance(values, Mapping):
        raise TypeError(f"expected a JSON object (a mapping), got {type(values).__name__}")
    out = struct_pb2.Struct()
    out.update(values)
    return out


def duration(value: Seconds | None) -> duration_pb2.Duration | None:
    """A timedelta or a number of seconds as a Duration; None stays unset."""
    if value is None:
        return None
    out = duration_pb2.Duration()
    if isinstance(value, timedelta):
        out.FromTimedelta(value)
    else:
        out.FromNanoseconds(round(value * 1e9))
    return out


# --- out of messages ----------------------------------------------------------


def plain_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict, whole numbers as int."""
    return {key: _python(value) for key, value in message.fields.items()}


def _python(value: struct_pb2.Value) -> Any:
    which = value.WhichOneof("kind")
    if which == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) <= _EXACT else number
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "struct_value":
        return plain_dict(value.struct_value)
    if which == "list_value":
        return [_python(v) for v in value.list_value.values]
    return None


def _optional_dict(message: Message, name: str) -> dict[str, Any] | None:
    if not message.HasField(name):
        return None
    value: struct_pb2.Struct = getattr(message, name)
    return plain_dict(value)


def when(value: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as a UTC-aware datetime."""
    return value.ToDatetime(tzinfo=UTC)


def _optional_when(message: Message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return when(getattr(message, name))


def _span(value: duration_pb2.Duration) -> timedelta:
    return value.ToTimedelta()


def _text(value: str) -> str | None:
    return value or None


def namespace(m: namespace_pb2.Namespace) -> Namespace:
    return Namespace(namespace_id=m.namespace_id, description=m.description, create_time=when(m.create_time))


def definition(m: definition_pb2.JobDefinition) -> Definition:
    return Definition(
        def_id=m.def_id,
        namespace_id=m.namespace_id,
        name=m.name,
        version=m.version,
        kind=m.kind,
        payload_template=plain_dict(m.payload_template),
        cron_spec=_text(m.cron_spec),
        time_zone=m.time_zone,
        misfire_policy=MisfirePolicy(m.misfire_policy),
        overlap_policy=OverlapPolicy(m.overlap_policy),
        starting_deadline=_span(m.starting_deadline),
        max_attempts=m.max_attempts,
        backoff_initial=_span(m.backoff_initial),
        backoff_max=_span(m.backoff_max),
        backoff_multiplier=m.backoff_multiplier,
        execution_timeout=_span(m.execution_timeout),
        default_priority=m.default_priority,
        delay_after_parents=_span(m.delay_after_parents),
        create_time=when(m.create_time),
        next_fire_times=tuple(when(t) for t in m.next_fire_times),
        retire_time=_optional_when(m, "retire_time"),
        warnings=tuple(m.warnings),
    )


def job(m: job_pb2.Job) -> Job:
    return Job(
        job_id=m.job_id,
        namespace_id=m.namespace_id,
        dag_id=_text(m.dag_id),
        def_id=m.def_id,
        def_version=m.def_version,
        kind=m.kind,
        key=m.key,
        state=JobState(m.state),
        attempt=m.attempt,
        max_attempts=m.max_attempts,
        priority=m.priority,
        payload=plain_dict(m.payload),
        result=_optional_dict(m, "result"),
        error=_text(m.error),
        due_time=_optional_when(m, "due_time"),
        create_time=when(m.create_time),
        start_time=_optional_when(m, "start_time"),
        end_time=_optional_when(m, "end_time"),
        update_time=_optional_when(m, "update_time"),
        lease_expire_time=_optional_when(m, "lease_expire_time"),
        worker_id=_text(m.worker_id),
        waiting=waiting(m.waiting) if m.HasField("waiting") else None,
    )


def waiting(m: job_pb2.Waiting) -> Waiting:
    return Waiting(
        reason=WaitingReason(m.reason),
        message=m.message,
        unfinished_parents=m.unfinished_parents,
        parents=tuple(WaitingParent(key=p.key, job_id=p.job_id, state=JobState(p.state)) for p in m.parents),
        due_time=_optional_when(m, "due_time"),
        retry_after_attempt=m.retry_after_attempt,
        kind=_text(m.kind),
        slots_in_use=m.slots_in_use,
        slots_total=m.slots_total,
    )


def dag(m: dag_pb2.Dag) -> Dag:
    return Dag(
        dag_id=m.dag_id,
        namespace_id=m.namespace_id,
        name=m.name,
        state=DagState(m.state),
        job_count=m.job_count,
        unfinished_job_count=m.unfinished_job_count,
        create_time=when(m.create_time),
        start_time=_optional_when(m, "start_time"),
        end_time=_optional_when(m, "end_time"),
        update_time=_optional_when(m, "update_time"),
    )


def dependency(m: dag_pb2.Dependency) -> Dependency:
    return Dependency(parent_job_id=m.parent_job_id, child_job_id=m.child_job_id)


def schedule(m: schedule_pb2.Schedule) -> Schedule:
    return Schedule(
        namespace_id=m.namespace_id,
        name=m.name,
        paused=m.paused,
        def_id=m.def_id,
        def_version=m.def_version,
        cron_spec=_text(m.cron_spec),
        time_zone=m.time_zone,
        next_fire_times=tuple(when(t) for t in m.next_fire_times),
        pause_time=_optional_when(m, "pause_time"),
        resume_time=_optional_when(m, "resume_time"),
        retire_time=_optional_when(m, "retire_time"),
    )


def fire(m: schedule_pb2.Fire) -> Fire:
    return Fire(
        namespace_id=m.namespace_id,
        name=m.name,
        def_id=m.def_id,
        def_version=m.def_version,
        scheduled_time=when(m.scheduled_time),
        fire_time=when(m.fire_time),
        status=FireStatus(m.status),
        reason=_text(m.reason),
        job_id=_text(m.job_id),
    )


def token(m: token_pb2.Token) -> Token:
    return Token(
        token_id=m.token_id,
        scope=TokenScope(m.scope),
        namespace_id=m.namespace_id,
        description=m.description,
        create_time=when(m.create_time),
        expire_time=_optional_when(m, "expire_time"),
        revoke_time=_optional_when(m, "revoke_time"),
        last_used_time=_optional_when(m, "last_used_time"),
    )


def connected_worker(m: worker_pb2.ConnectedWorker) -> ConnectedWorker:
    return ConnectedWorker(
        worker_id=m.worker_id,
        stream_id=m.stream_id,
        replica_id=m.replica_id,
        namespaces=tuple(m.namespaces),
        all_namespaces=m.all_namespaces,
        kinds=tuple(m.kinds),
        slots=m.slots,
        jobs_in_flight=m.jobs_in_flight,
        connect_time=when(m.connect_time),
        heartbeat_time=when(m.heartbeat_time),
    )
