"""NamespaceService."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from chronosched.v1 import namespace_pb2, namespace_pb2_grpc
from chronosched_server import ids, render, validation
from chronosched_server.api.auth import caller
from chronosched_server.api.common import paginate
from chronosched_server.storage import namespaces
from chronosched_server.storage.db import Database
from chronosched_server.validation import Violations

Ctx = grpc.aio.ServicerContext[Any, Any]


class NamespaceServicer(namespace_pb2_grpc.NamespaceServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def CreateNamespace(
        self, request: namespace_pb2.CreateNamespaceRequest, context: Ctx
    ) -> namespace_pb2.Namespace:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        validation.check_text(v, "description", request.description, validation.MAX_DESCRIPTION)
        v.raise_if_any()
        return render.namespace(await namespaces.create(self.db, request.namespace_id, request.description))

    async def ListNamespaces(
        self, request: namespace_pb2.ListNamespacesRequest, context: Ctx
    ) -> namespace_pb2.ListNamespacesResponse:
        v = Violations()
        limit = validation.page_size(v, request.page_size)
        after = ids.decode_page_token(request.page_token)
        v.raise_if_any()
        # A token for one namespace lists only that one.
        rows = await namespaces.list_page(self.db, after, limit + 1, only=caller().namespace)
        page, token = paginate(rows, limit, lambda r: r.namespace_id)
        return namespace_pb2.ListNamespacesResponse(
            namespaces=[render.namespace(r) for r in page], next_page_token=token
        )

    async def GetNamespace(
        self, request: namespace_pb2.GetNamespaceRequest, context: Ctx
    ) -> namespace_pb2.Namespace:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        v.raise_if_any()
        return render.namespace(await namespaces.get(self.db, request.namespace_id))

    async def DeleteNamespace(
        self, request: namespace_pb2.DeleteNamespaceRequest, context: Ctx
    ) -> empty_pb2.Empty:
        v = Violations()
        validation.check_slug(v, "namespace_id", request.namespace_id)
        v.raise_if_any()
        await namespaces.delete(self.db, request.namespace_id)
        return empty_pb2.Empty()
