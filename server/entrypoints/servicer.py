"""The gRPC servicer: request message -> plain values -> one use case -> response.

Responses about experiments are the read model's stored bytes (server/adapters/views.py),
and those about revisions the history's (server/adapters/revisions.py), returned as they
are: the interceptor's response serializer passes bytes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from google.protobuf import empty_pb2

from server.domain.concurrency import IDEMPOTENCY_KEY, IF_MATCH, IF_NONE_MATCH, not_modified
from server.domain.pagination import Cursor, Position, encode_cursor, encode_revision_cursor
from server.entrypoints import rest_statuses
from server.entrypoints.assignments import assignments_response, at_of
from server.entrypoints.authentication import AUTHORIZATION, api_key_from_header
from server.entrypoints.response_headers import send_with_response
from server.entrypoints.translate import (
    changes_response,
    experiment_input,
    list_response,
    revisions_response,
    watch_change,
    watch_heartbeat,
)
from server.service_layer.experiments import ExperimentService
from server.service_layer.ports import ExperimentView
from server.service_layer.watches import Heartbeat

# Response metadata that Envoy passes on as the REST `ETag` header.
ETAG_HEADER = "etag"
# The URL of a created experiment; the gateway passes it on as the 201's Location header.
LOCATION_HEADER = "location"


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    """Methods that answer with an experiment return its stored, serialized form (bytes),
    which the generated stubs do not type: hence their `type: ignore[override]`."""

    def __init__(self, service: ExperimentService, public_base_url: str) -> None:
        self._service = service
        self._public_base_url = public_base_url

    def ListExperiments(  # type: ignore[override]
        self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.ListExperimentsResponse
        page = self._service.list(
            _api_key(context), request.organization_id, request.page_size, request.cursor
        )
        base = self._collection_url(request.organization_id)
        next_cursor, previous_cursor = _raw(page.next), _raw(page.previous)
        links = pb.ListExperimentsResponse(
            next=_page_url(base, next_cursor, request.page_size),
            previous=_page_url(base, previous_cursor, request.page_size),
            next_cursor=next_cursor,
            previous_cursor=previous_cursor,
        )
        return list_response([view.message for view in page.items], links)

    def GetExperiment(  # type: ignore[override]
        self, request: pb.GetExperimentRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.Experiment, as stored
        view = self._service.get(_api_key(context), request.organization_id, request.experiment_id)
        metadata: tuple[tuple[str, str], ...] = (_etag(view),)
        if not_modified(_header(context, IF_NONE_MATCH), view):
            # REST answers 304 without a body; gRPC gets the experiment (rest_statuses.py).
            metadata += ((rest_statuses.HEADER, str(rest_statuses.NOT_MODIFIED)),)
        send_with_response(context, metadata)
        return view.message

    def CreateExperiment(  # type: ignore[override]
        self, request: pb.CreateExperimentRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.Experiment
        view = self._service.create(
            _api_key(context),
            request.organization_id,
            experiment_input(request.experiment),
            _header(context, IDEMPOTENCY_KEY),
        )
        location = f"{self._collection_url(str(view.organization_id))}/{view.id}"
        send_with_response(context, ((LOCATION_HEADER, location), _etag(view)))
        return view.message

    def UpdateExperiment(  # type: ignore[override]
        self, request: pb.UpdateExperimentRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.Experiment
        view = self._service.update(
            _api_key(context),
            request.organization_id,
            request.experiment_id,
            experiment_input(request.experiment),
            _header(context, IF_MATCH),
        )
        send_with_response(context, (_etag(view),))
        return view.message

    def DeleteExperiment(
        self, request: pb.DeleteExperimentRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._service.delete(
            _api_key(context),
            request.organization_id,
            request.experiment_id,
            _header(context, IF_MATCH),
        )
        return empty_pb2.Empty()

    def ListExperimentRevisions(  # type: ignore[override]
        self, request: pb.ListExperimentRevisionsRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.ListExperimentRevisionsResponse
        page = self._service.list_revisions(
            _api_key(context),
            request.organization_id,
            request.experiment_id,
            request.page_size,
            request.cursor,
        )
        experiment = quote(request.experiment_id, safe="")
        base = f"{self._collection_url(request.organization_id)}/{experiment}/revisions"
        next_cursor, previous_cursor = _raw_revisions(page.next), _raw_revisions(page.previous)
        links = pb.ListExperimentRevisionsResponse(
            next=_page_url(base, next_cursor, request.page_size),
            previous=_page_url(base, previous_cursor, request.page_size),
            next_cursor=next_cursor,
            previous_cursor=previous_cursor,
        )
        return revisions_response(list(page.items), links)

    def ListExperimentChanges(  # type: ignore[override]
        self, request: pb.ListExperimentChangesRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.ListExperimentChangesResponse
        page = self._service.list_changes(
            _api_key(context), request.organization_id, request.after, request.page_size
        )
        return changes_response(page.changes, page.next_position)

    def WatchExperimentChanges(  # type: ignore[override]
        self, request: pb.WatchExperimentChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:  # serialized pb.WatchExperimentChangesResponse messages
        watch = self._service.watch(_api_key(context), request.organization_id, request.after)
        context.add_callback(watch.cancel)  # the client went away: stop waiting at once
        for event in watch:
            if isinstance(event, Heartbeat):
                yield watch_heartbeat(event.position)
            else:
                yield watch_change(event)

    def AssignVisitor(  # type: ignore[override]
        self, request: pb.AssignVisitorRequest, context: grpc.ServicerContext
    ) -> bytes:  # a serialized pb.AssignVisitorResponse
        found = self._service.assign(
            _api_key(context),
            request.organization_id,
            request.visitor_id,
            request.room_id,
            at_of(request),
        )
        return assignments_response(found)

    def _collection_url(self, organization_id: str) -> str:
        # The configured public URL, never the request's Host: a client could forge that.
        return f"{self._public_base_url}/api/v5/orgs/{organization_id}/experiments"


def _raw(cursor: Cursor[Position] | None) -> str:
    return encode_cursor(cursor) if cursor is not None else ""


def _raw_revisions(cursor: Cursor[int] | None) -> str:
    return encode_revision_cursor(cursor) if cursor is not None else ""


def _page_url(base: str, cursor: str, page_size: int) -> str:
    """The URL of a page of a list at `base`: its cursor, and the page size asked for."""
    if not cursor:
        return ""
    query = {"cursor": cursor}
    if page_size:
        query["page_size"] = str(page_size)
    return f"{base}?{urlencode(query)}"


def _api_key(context: grpc.ServicerContext) -> str | None:
    return api_key_from_header(_header(context, AUTHORIZATION))


def _header(context: grpc.ServicerContext, name: str) -> str | None:
    """The first text metadata value of `name` (lower case), as sent; None when absent."""
    for key, value in context.invocation_metadata():
        if key == name:
            return value if isinstance(value, str) else None
    return None


def _etag(view: ExperimentView) -> tuple[str, str]:
    # HTTP wants a quoted (strong) entity tag; the message's etag field is the bare tag.
    return ETAG_HEADER, f'"{view.etag}"'
