"""Cross-cutting concerns of every RPC: one log line each, and errors turned into statuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from server.adapters.database import unavailable_cause
from server.domain import limits, messages
from server.domain.errors import DomainError, RequestTooLarge, UnreadableRequest
from server.entrypoints.errors import UNAVAILABLE, rich_status, status_code

log = logging.getLogger("experiments.rpc")

_HEALTH = "/grpc.health.v1.Health/"

Behavior = Callable[[Any, grpc.ServicerContext], Any]


class RpcInterceptor(grpc.ServerInterceptor):
    """Logs method, status and duration of each unary RPC; maps failures to statuses.

    A DomainError is the client's mistake and becomes its status with a safe
    message. A database outage becomes UNAVAILABLE (retry) with one log line.
    Anything else is a bug: logged with its traceback, answered INTERNAL with a
    generic message, so no exception text reaches a client.

    A handler may return bytes: they are the serialized response, sent as they are.

    The request bytes are parsed here rather than by grpcio, whose failure to parse
    (malformed protobuf, invalid UTF-8 in a string) would answer INTERNAL before any
    of our code runs: too large or unreadable requests are INVALID_ARGUMENT, in our words.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap(details.method, handler.unary_unary, handler.request_deserializer),
            # None: grpcio hands the request bytes over as they came.
            request_deserializer=None,
            response_serializer=_passing_bytes_through(handler.response_serializer),
        )


def _passing_bytes_through(
    serializer: Callable[[Any], bytes] | None,
) -> Callable[[Any], bytes] | None:
    """The handler's serializer, except that a response already serialized (the read model's
    stored bytes, see servicer.py) goes out untouched."""
    if serializer is None:
        return None

    def serialize(response: Any) -> bytes:
        return response if type(response) is bytes else serializer(response)

    return serialize


def _parse(raw: bytes, deserializer: Callable[[bytes], Any] | None) -> Any:
    if deserializer is None:
        return raw
    if len(raw) > limits.MAX_REQUEST_BYTES:
        raise RequestTooLarge()
    try:
        return deserializer(raw)
    except Exception:  # DecodeError, or RecursionError for deep nesting: the client's bytes
        message_type = getattr(deserializer, "__self__", None)
        name = getattr(getattr(message_type, "DESCRIPTOR", None), "full_name", "request")
        raise UnreadableRequest(messages.UNREADABLE_REQUEST.format(message=name)) from None


def _wrap(method: str, behavior: Behavior, deserializer: Callable[[bytes], Any] | None) -> Behavior:
    def wrapped(raw: bytes, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        cause = None
        try:
            return behavior(_parse(raw, deserializer), context)
        except DomainError as error:
            code = status_code(error)
            context.abort_with_status(rich_status(error))
        except Exception as error:
            if not context.is_active():
                # The client went away (cancelled or timed out): nothing to answer, no bug.
                code = grpc.StatusCode.CANCELLED
                return None
            cause = unavailable_cause(error)  # a database fault worth a retry, or None
            if cause is not None:
                # An outage is not a bug: the call's one line says why, no traceback.
                code = UNAVAILABLE
                context.abort(UNAVAILABLE, messages.UNAVAILABLE)
            else:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc %s failed", method)
                context.abort(grpc.StatusCode.INTERNAL, messages.INTERNAL)
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            if cause is not None:
                log.warning(
                    "rpc method=%s status=%s duration_ms=%.2f database_unavailable=%s",
                    method,
                    code.name,
                    duration_ms,
                    cause,
                )
            else:
                # Envoy health-checks every second; only real calls deserve an INFO line.
                log.log(
                    logging.DEBUG if method.startswith(_HEALTH) else logging.INFO,
                    "rpc method=%s status=%s duration_ms=%.2f",
                    method,
                    code.name,
                    duration_ms,
                )

    return wrapped
