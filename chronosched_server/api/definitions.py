"""DefinitionService."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import grpc

from chronosched.v1 import definition_pb2, definition_pb2_grpc, job_pb2
from chronosched_server import cron, render, validation, waiting
from chronosched_server.api.common import paginate, to_dict, uuid_field, uuid_token
from chronosched_server.dispatch.dispatcher import Dispatcher
from chronosched_server.errors import Why
from chronosched_server.metrics import Metrics
from chronosched_server.storage import definitions, jobs
from chronosched_server.storage.db import Database
from chronosched_server.storage.definitions import NewDefinition
from chronosched_server.storage.metrics import Tally
from chronosched_server.validation import Violations

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]
Def = definition_pb2.JobDefinition

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)
# Request enum -> stored text: the inverse of convert's maps, plus the
# documented defaults for an unset (UNSPECIFIED) policy.
_MISFIRE = {v: k for k, v in render.MISFIRE.items()} | {Def.MISFIRE_POLICY_UNSPECIFIED: "skip"}
_OVERLAP = {v: k for k, v in render.OVERLAP.items()} | {Def.OVERLAP_POLICY_UNSPECIFIED: "allow"}


def _duration(
    v: Violations,
    request: definition_pb2.CreateDefinitionRequest,
    name: str,
    default: timedelta,
    lo: timedelta,
    hi: timedelta,
) -> timedelta:
    if not request.HasField(name):  # type: ignore[arg-type]
        return default
    return validation.check_duration(v, name, getattr(request, name), lo, hi)


def read_new_definition(request: definition_pb2.CreateDefinitionRequest) -> NewDefinition:
    """Validate a CreateDefinitionRequest whole and apply the documented defaults."""
    v = Violations()
    validation.check_slug(v, "namespace_id", request.namespace_id)
    validation.check_pattern(v, "name", request.name, validation.NAME_RE, required=True)
    validation.check_pattern(v, "kind", request.kind, validation.KIND_RE, required=True)
    validation.check_json_object(v, "payload_template", request.payload_template)
    validation.check_kind_payload(
        v, "payload_template", request.kind, to_dict(request.payload_template), template=True
    )
    validation.check_pattern(v, "request_id", request.request_id, validation.REQUEST_ID_RE, required=False)
    time_zone = request.time_zone or "UTC"
    try:
        cron.parse_schedule(request.cron_spec or "@hourly", time_zone)
    except cron.TimeZoneError as exc:
        v.add("time_zone", str(exc), Why.UNKNOWN_VALUE)
    except cron.CronSpecError as exc:
        v.add("cron_spec", str(exc), Why.INVALID_FORMAT)
    if request.misfire_policy not in _MISFIRE:
        v.add("misfire_policy", f"unknown policy {request.misfire_policy}", Why.UNKNOWN_VALUE)
    if request.overlap_policy not in _OVERLAP:
        v.add("overlap_policy", f"unknown policy {request.overlap_policy}", Why.UNKNOWN_VALUE)
    max_attempts = request.max_attempts if request.HasField("max_attempts") else 3
    validation.check_range(v, "max_attempts", max_attempts, validation.MIN_ATTEMPTS, validation.MAX_ATTEMPTS)
    multiplier = request.backoff_multiplier if request.HasField("backoff_multiplier") else 2.0
    validation.check_range(v, "backoff_multiplier", multiplier, 1.0, 10.0)
    priority = request.default_priority if request.HasField("default_priority") else 0
    validation.check_range(v, "default_priority", priority, validation.MIN_PRIORITY, validation.MAX_PRIORITY)
    zero = timedelta(0)
    backoff_initial = _duration(v, request, "backoff_initial", timedelta(seconds=1), zero, _DAY)
    backoff_max = _duration(v, request, "backoff_max", max(timedelta(minutes=5), backoff_initial), zero, _DAY)
    if backoff_max < backoff_initial:
        v.add("backoff_max", "must be at least backoff_initial", Why.CONFLICT)
    new = NewDefinition(
        namespace_id=request.namespace_id,
        name=request.name,
        kind=request.kind,
        payload_template=json.dumps(to_dict(request.payload_template)),
        cron_spec=request.cron_spec.strip(),
        time_zone=time_zone,
        misfire_policy=_MISFIRE.get(request.misfire_policy, "skip"),
        overlap_policy=_OVERLAP.get(request.overlap_policy, "allow"),
        starting_deadline=_duration(
            v, request, "starting_deadline", timedelta(seconds=60), timedelta(seconds=1), _DAY
        ),
        max_attempts=max_attempts,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        backoff_multiplier=multiplier,
        execution_timeout=_duration(
            v, request, "execution_timeout", timedelta(hours=1), timedelta(seconds=1), _WEEK
        ),
        default_priority=priority,
        delay_after_parents=_duration(v, request, "delay_after_parents", zero, zero, _WEEK),
    )
    v.raise_if_any()
    return new


class DefinitionServicer(definition_pb2_grpc.DefinitionServiceServicer):
    def __init__(self, db: Database, metrics: Metrics, dispatcher: Dispatcher):
        self.db = db
        self.metrics = metrics
        # This server's workers, for Tick's hand-off.
        self.dispatcher = dispatcher
        self._warned: set[tuple[str, str]] = set()

    async def CreateDefinition(
        self, request: definition_pb2.CreateDefinitionRequest, context: Ctx
    ) -> definition_pb2.JobDefinition:
        new = read_new_definition(request)
        created, served = await definitions.create(self.db, new, request.request_id)
        out = render.definition(created)
        if not served:
            warning = waiting.unserved_warning(new.namespace_id, new.kind)
            out.warnings.append(warning)
            # Logged once per (namespace, kind) and process, not per version.
            if (new.namespace_id, new.kind) not in self._warned:
                self._warned.add((new.namespace_id, new.kind))
                log.warning("%s", warning, extra={"event": "kind_unserved", "namespace": new.namespace_id})
        return out

    async def ListDefinitions(
        self, request: definition_pb2.ListDefinitionsRequest, context: Ctx
    ) -> definition_pb2.ListDefinitionsResponse:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        validation.check_pattern(v, "name", request.name, validation.NAME_RE, required=False)
        limit = validation.page_size(v, request.page_size)
        after = uuid_token(v, request.page_token)
        v.raise_if_any()
        rows = await definitions.list_page(
            self.db, request.namespace_id, request.name or None, after, limit + 1
        )
        page, token = paginate(rows, limit, lambda r: str(r.def_id))
        return definition_pb2.ListDefinitionsResponse(
            definitions=[render.definition(r) for r in page], next_page_token=token
        )

    async def GetDefinition(
        self, request: definition_pb2.GetDefinitionRequest, context: Ctx
    ) -> definition_pb2.JobDefinition:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        def_id = uuid_field(v, "def_id", request.def_id)
        v.raise_if_any()
        assert def_id is not None
        return render.definition(await definitions.get(self.db, request.namespace_id, def_id))

    async def RetireDefinition(
        self, request: definition_pb2.RetireDefinitionRequest, context: Ctx
    ) -> definition_pb2.JobDefinition:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        def_id = uuid_field(v, "def_id", request.def_id)
        v.raise_if_any()
        assert def_id is not None
        return render.definition(await definitions.retire(self.db, request.namespace_id, def_id))

    async def Tick(self, request: definition_pb2.TickRequest, context: Ctx) -> job_pb2.Job:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        def_id = uuid_field(v, "def_id", request.def_id)
        validation.check_json_object(v, "payload", request.payload)
        validation.check_pattern(
            v, "request_id", request.request_id, validation.REQUEST_ID_RE, required=False
        )
        v.raise_if_any()
        assert def_id is not None
        payload = to_dict(request.payload) if request.HasField("payload") else None
        tally = Tally()
        kind = jobs.known_kind(request.namespace_id, def_id)
        if kind is None or request.request_id:
            row = await jobs.tick(self.db, request.namespace_id, def_id, payload, request.request_id, tally)
        else:
            row = await self.dispatcher.handoff(
                request.namespace_id,
                kind,
                lambda lease_to: jobs.tick(
                    self.db, request.namespace_id, def_id, payload, "", tally, lease_to
                ),
            )
        self.metrics.record(tally)
        return render.job(row)
