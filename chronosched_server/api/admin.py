"""AdminService."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc

from chronosched.v1 import admin_pb2, admin_pb2_grpc
from chronosched_server import __version__, validation
from chronosched_server.errors import Unavailable
from chronosched_server.storage import admin
from chronosched_server.storage.db import Database
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def Prune(self, request: admin_pb2.PruneRequest, context: Ctx) -> admin_pb2.PruneResponse:
        v = Violations()
        # Unset is the documented default (admin.proto), not "everything":
        # an empty body must not prune what finished a second ago.
        older_than = admin.DEFAULT_OLDER_THAN
        if request.HasField("older_than"):
            older_than = validation.check_duration(
                v, "older_than", request.older_than, timedelta(0), timedelta(days=36500)
            )
        if request.namespace_id:
            validation.check_slug(v, "namespace_id", request.namespace_id)
        v.raise_if_any()
        pruned = await admin.prune(self.db, older_than, request.namespace_id or None)
        return admin_pb2.PruneResponse(
            dags_pruned=pruned.dags, jobs_pruned=pruned.jobs, dependencies_pruned=pruned.dependencies
        )

    async def Healthz(self, request: admin_pb2.HealthzRequest, context: Ctx) -> admin_pb2.HealthzResponse:
        if not await self.db.ping(wait_s=1.0):
            raise Unavailable("database unreachable", reason="DATABASE_UNAVAILABLE")
        return admin_pb2.HealthzResponse(status="SERVING", version=__version__)
