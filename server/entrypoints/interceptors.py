"""Cross-cutting concerns of every RPC: one log line each, the headers' size, and errors turned
into statuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from server.adapters.database import unavailable_cause
from server.domain import limits, messages
from server.domain.errors import (
    DomainError,
    HeadersTooLarge,
    RequestTooLarge,
    UnreadableRequest,
)
from server.entrypoints.errors import UNAVAILABLE, rich_status, status_code

log = logging.getLogger("experiments.rpc")

_HEALTH = "/grpc.health.v1.Health/"
# Headers a proxy adds (Envoy: x-forwarded-for, x-envoy-original-path...) and x-request-id do
# not count against limits.MAX_HEADER_BYTES, at the gateway or here.
_PROXY_HEADER_PREFIXES = ("x-forwarded-", "x-envoy-")

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
    So are headers over the limit, for every method, streaming ones included.
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        refusal = _inspect_headers(details.method, details.invocation_metadata)
        handler = continuation(details)
        if handler is None:
            return handler
        if refusal is not None:
            return _refusing(handler, details.method, refusal)
        if handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap(details.method, handler.unary_unary, handler.request_deserializer),
            # None: grpcio hands the request bytes over as they came.
            request_deserializer=None,
            response_serializer=_passing_bytes_through(handler.response_serializer),
        )


def _inspect_headers(method: str, metadata: Sequence[tuple[str, Any]]) -> HeadersTooLarge | None:
    """Checks the call's headers against limits.MAX_HEADER_BYTES, counted as the gateway counts
    them: name plus value bytes (a `-bin` value decoded), the headers proxies add not counted.

    Also names, in the log, each header whose value is not printable ASCII, as gRPC metadata
    must be; never its value (grpcio's own line, which quoted the value, is dropped: logs.py).
    """
    size = 0
    for name, value in metadata:
        if isinstance(value, str):
            if not (value.isascii() and value.isprintable()):
                log.warning(
                    "rpc method=%s header=%s: a value that is not printable ASCII "
                    "(not logged; a value that is not UTF-8 was read as Latin-1)",
                    method,
                    name,
                )
            length = len(value) if value.isascii() else len(value.encode())
        else:
            length = len(value)
        if not name.startswith(_PROXY_HEADER_PREFIXES) and name != "x-request-id":
            size += len(name) + length
    return HeadersTooLarge() if size > limits.MAX_HEADER_BYTES else None


def _refusing(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, error: DomainError
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `handler`'s kind (unary or streaming) that answers `error` and reads
    nothing of the request."""

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        _log_call(method, status_code(error), time.perf_counter())
        context.abort_with_status(rich_status(error))

    behavior: Any = refuse
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behavior)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behavior)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behavior)
    return grpc.unary_unary_rpc_method_handler(behavior)


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
            _log_call(method, code, started, cause)

    return wrapped


def _log_call(method: str, code: grpc.StatusCode, started: float, cause: str | None = None) -> None:
    """The call's one line: method, status, duration; never a request value."""
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
