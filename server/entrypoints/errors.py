"""Exceptions -> gRPC statuses, in one table, by the rules of google/rpc/code.proto."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.domain.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestTooLarge,
    Unauthenticated,
    UnreadableRequest,
)

STATUS_OF: dict[type[DomainError], grpc.StatusCode] = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    # Not RESOURCE_EXHAUSTED, which means "retry later" (REST 429): this request never fits.
    RequestTooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    UnreadableRequest: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_code(error: DomainError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return grpc.StatusCode.INTERNAL


def rich_status(error: DomainError) -> grpc.Status:
    """The status to answer; bad input carries google.rpc.BadRequest field violations."""
    code: grpc.StatusCode = status_code(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    return rpc_status.to_status(status)
