"""The gRPC servicer: request message -> plain values -> one use case -> response message."""

from __future__ import annotations

from urllib.parse import urlencode

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from google.protobuf import empty_pb2

from server.domain.pagination import Cursor, encode_cursor
from server.entrypoints.translate import experiment_input, experiment_message, fill_experiment
from server.service_layer.experiments import ExperimentService

# Read by the gateway's Lua filter: the REST status of a successful call, when not 200.
HTTP_CODE_HEADER = "x-http-code"
# The URL of a created experiment; the gateway passes it on as the 201's Location header.
LOCATION_HEADER = "location"


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    def __init__(self, service: ExperimentService, public_base_url: str) -> None:
        self._service = service
        self._public_base_url = public_base_url

    def ListExperiments(
        self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> pb.ListExperimentsResponse:
        page = self._service.list(
            _authorization(context), request.organization_id, request.page_size, request.cursor
        )
        base = self._collection_url(request.organization_id)

        next_cursor, previous_cursor = _raw(page.next), _raw(page.previous)

        def url(cursor: str) -> str:
            if not cursor:
                return ""
            query = {"cursor": cursor}
            if request.page_size:
                query["page_size"] = str(request.page_size)
            return f"{base}?{urlencode(query)}"

        response = pb.ListExperimentsResponse(
            next=url(next_cursor),
            previous=url(previous_cursor),
            next_cursor=next_cursor,
            previous_cursor=previous_cursor,
        )
        for experiment in page.items:
            # Filled in place: results=[...] would copy every message once more.
            fill_experiment(response.results.add(), experiment)
        return response

    def GetExperiment(
        self, request: pb.GetExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        experiment = self._service.get(
            _authorization(context), request.organization_id, request.experiment_id
        )
        return experiment_message(experiment)

    def CreateExperiment(
        self, request: pb.CreateExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        experiment = self._service.create(
            _authorization(context), request.organization_id, experiment_input(request.experiment)
        )
        location = f"{self._collection_url(str(experiment.organization.id))}/{experiment.id}"
        context.send_initial_metadata(((HTTP_CODE_HEADER, "201"), (LOCATION_HEADER, location)))
        return experiment_message(experiment)

    def UpdateExperiment(
        self, request: pb.UpdateExperimentRequest, context: grpc.ServicerContext
    ) -> pb.Experiment:
        experiment = self._service.update(
            _authorization(context),
            request.organization_id,
            request.experiment_id,
            experiment_input(request.experiment),
        )
        return experiment_message(experiment)

    def DeleteExperiment(
        self, request: pb.DeleteExperimentRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._service.delete(
            _authorization(context), request.organization_id, request.experiment_id
        )
        context.send_initial_metadata(((HTTP_CODE_HEADER, "204"),))
        return empty_pb2.Empty()

    def _collection_url(self, organization_id: str) -> str:
        # The configured public URL, never the request's Host: a client could forge that.
        return f"{self._public_base_url}/api/v5/orgs/{organization_id}/experiments"


def _raw(cursor: Cursor | None) -> str:
    return encode_cursor(cursor) if cursor is not None else ""


def _authorization(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None
