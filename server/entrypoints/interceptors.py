"""Cross-cutting concerns of every RPC: one log line each, the headers' size, and errors turned
into statuses."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor_pool

from server.adapters.database import CALL_DEADLINE, connection_lost, unavailable_cause
from server.domain import limits, messages
from server.domain.errors import (
    DomainError,
    HeadersTooLarge,
    RequestTooLarge,
    UnreadableRequest,
)
from server.entrypoints.errors import UNAVAILABLE, rich_status, status_code
from server.entrypoints.executor import REFUSED, WorkerPools

log = logging.getLogger("experiments.rpc")

_HEALTH = "/grpc.health.v1.Health/"
_HEALTH_CHECK = f"{_HEALTH}Check"
# Our own service's methods: only their streams get the error translation and the log line.
OUR_SERVICE = "/experiments.v5.ExperimentService/"
# Headers a proxy adds (Envoy: x-forwarded-for, x-envoy-original-path...) and x-request-id do
# not count against limits.MAX_HEADER_BYTES, at the gateway or here.
_PROXY_HEADER_PREFIXES = ("x-forwarded-", "x-envoy-")

# Sent with RESOURCE_EXHAUSTED when a worker is full; the gateway passes it on as the 429's
# Retry-After header. Calls are short: a second is long enough for the queue to drain.
RETRY_AFTER_HEADER = "retry-after"
RETRY_AFTER_SECONDS = "1"

# A call's work must end this long before its deadline, for the answer to reach the client in
# time: a write commits only before (deadline - margin), so that a client never hears of a
# failure (DEADLINE_EXCEEDED, or the gateway's 504) while its write commits after all.
ANSWER_MARGIN_SECONDS = 0.1

Behavior = Callable[[Any, grpc.ServicerContext], Any]


class RpcInterceptor(grpc.ServerInterceptor):
    """Logs method, status and duration of each RPC of ours; maps failures to statuses.

    A DomainError is the client's mistake (or, like a stopping server, a condition the use
    case reports) and becomes its status with a safe message. A database outage becomes
    UNAVAILABLE (retry) with one log line. Anything else is a bug: logged with its
    traceback, answered INTERNAL with a generic message, so no exception text reaches a
    client. The same for our server streams (a watch), whose one line comes when they end.

    A handler may return (or, streaming, yield) bytes: they are the serialized response,
    sent as they are.

    The request bytes are parsed here rather than by grpcio, whose failure to parse
    (malformed protobuf, invalid UTF-8 in a string) would answer INTERNAL before any
    of our code runs: too large or unreadable requests are INVALID_ARGUMENT, in our words.
    So are headers over the limit, for every method, streaming ones included.

    It also puts each call on its pool (executor.py): streams on the stream pool, health
    checks on the control pool, writes on the write pool, the rest on the unary pool; a call
    a full pool refused is answered RESOURCE_EXHAUSTED at once. Other services' streams
    (server reflection, health's Watch) keep their own handling and only get their pool. It
    hands the call's deadline to the database code (database.CALL_DEADLINE), which ends a
    write's waits by then.

    A read whose database connection was lost (a failover, a restarted server) runs once
    more: the pool dropped every connection from before the loss, so the second run gets a
    fresh one, and the client never sees the loss. Writes are never run twice here: whether
    the first one committed is unknown, and that is the client's call (UNAVAILABLE).
    """

    def __init__(self, pools: WorkerPools) -> None:
        self._pools = pools

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
            return _refusing(handler, details.method, refusal, self._pools.control)
        serializer = _passing_bytes_through(handler.response_serializer)
        if handler.unary_stream is not None and details.method.startswith(OUR_SERVICE):
            stream = _wrap_stream(
                details.method, handler.unary_stream, handler.request_deserializer
            )
            return grpc.unary_stream_rpc_method_handler(
                _on(self._pools.streams, stream),
                request_deserializer=None,
                response_serializer=serializer,
            )
        if handler.unary_unary is None:
            # Streams (server reflection, health's Watch): each holds a thread while open.
            return _on_pool(handler, self._pools.streams)
        writes = _writes(details.method)
        pool: futures.ThreadPoolExecutor = self._pools.unary
        if details.method == _HEALTH_CHECK:
            pool = self._pools.control
        elif writes:
            pool = self._pools.writes
        behavior = _wrap(
            details.method, handler.unary_unary, handler.request_deserializer, retry=not writes
        )
        return grpc.unary_unary_rpc_method_handler(
            _on(pool, behavior),
            # None: grpcio hands the request bytes over as they came.
            request_deserializer=None,
            response_serializer=serializer,
        )


@functools.cache
def _writes(method: str) -> bool:
    """Whether an RPC may write: one the contract serves over REST with a verb other than
    GET (google.api.http). Health checks, reflection and reads do not."""
    service, _, name = method.strip("/").partition("/")
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return False
    rule = descriptor.GetOptions().Extensions[annotations_pb2.http]
    return rule.WhichOneof("pattern") not in (None, "get")


_F = TypeVar("_F", bound=Callable[..., Any])


def _on(pool: futures.ThreadPoolExecutor, behavior: _F) -> _F:
    """`behavior`, run by grpcio on `pool` (see executor.py)."""
    behavior.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return behavior


def _on_pool(
    handler: grpc.RpcMethodHandler[Any, Any], pool: futures.ThreadPoolExecutor
) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming handler run on `pool`, refused at once when the pool is full."""
    make: Callable[..., grpc.RpcMethodHandler[Any, Any]]
    behavior: Callable[[Any, grpc.ServicerContext], Any] | None
    if handler.unary_stream is not None:
        make, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    elif handler.stream_stream is not None:
        make, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    else:
        make, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    assert behavior is not None, "a handler has one behavior"
    run = behavior

    def admitted(request: Any, context: grpc.ServicerContext) -> Any:
        if REFUSED.get():
            _refuse(context)
        return run(request, context)

    return make(
        _on(pool, admitted),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
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
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    error: DomainError,
    pool: futures.ThreadPoolExecutor,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of `handler`'s kind (unary or streaming), run on `pool`, that answers `error`
    and reads nothing of the request."""

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        _log_call(method, status_code(error), time.perf_counter())
        context.abort_with_status(rich_status(error))

    behavior: Any = _on(pool, refuse)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behavior)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behavior)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behavior)
    return grpc.unary_unary_rpc_method_handler(behavior)


def _refuse(context: grpc.ServicerContext) -> None:
    """Answers a call its full pool refused: RESOURCE_EXHAUSTED, retry in a second."""
    context.set_trailing_metadata(((RETRY_AFTER_HEADER, RETRY_AFTER_SECONDS),))
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, messages.BUSY)


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


class _Call:
    """One RPC as the interceptor sees it: how it ends, and its one log line."""

    def __init__(self, method: str, context: grpc.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.cause: str | None = None

    def admit(self) -> None:
        """Answers RESOURCE_EXHAUSTED (raising) if a full pool refused the call; else hands
        its deadline to the database code. (No deadline: a remaining time of ~290 million
        years, which a write's own bound, database.WRITE_WAIT_SECONDS, undercuts.)"""
        if REFUSED.get():
            self.code = grpc.StatusCode.RESOURCE_EXHAUSTED
            log.warning("rpc method=%s status=%s refused: worker full", self.method, self.code.name)
            _refuse(self.context)
        remaining = self.context.time_remaining()
        CALL_DEADLINE.set(time.monotonic() + remaining - ANSWER_MARGIN_SECONDS)

    def fail(self, error: Exception) -> None:
        """Answers the error as its status (raising, as context.abort does), or returns when
        the client has gone and there is no one to answer."""
        context = self.context
        if isinstance(error, DomainError):
            self.code = status_code(error)
            context.abort_with_status(rich_status(error))
        if not context.is_active():
            # The client went away (cancelled or timed out): nothing to answer, no bug.
            self.code = grpc.StatusCode.CANCELLED
            return
        self.cause = unavailable_cause(error)  # a database fault worth a retry, or None
        if self.cause is not None:
            # An outage is not a bug: the call's one line says why, no traceback.
            self.code = UNAVAILABLE
            context.abort(UNAVAILABLE, messages.UNAVAILABLE)
        self.code = grpc.StatusCode.INTERNAL
        log.exception("rpc %s failed", self.method)
        context.abort(grpc.StatusCode.INTERNAL, messages.INTERNAL)

    def log(self) -> None:
        _log_call(self.method, self.code, self.started, self.cause)


def _wrap(
    method: str,
    behavior: Behavior,
    deserializer: Callable[[bytes], Any] | None,
    *,
    retry: bool,
) -> Behavior:
    """The behavior with the interceptor's work around it; `retry`: run it once more when
    its database connection was lost (reads only)."""

    def wrapped(raw: bytes, context: grpc.ServicerContext) -> Any:
        call = _Call(method, context)
        call.admit()
        try:
            request = _parse(raw, deserializer)
            try:
                return behavior(request, context)
            except Exception as error:
                if not (retry and connection_lost(error)):
                    raise
                log.info("rpc method=%s: database connection lost; running it again", method)
                return behavior(request, context)
        except Exception as error:
            call.fail(error)
            return None
        finally:
            call.log()

    return wrapped


def _wrap_stream(
    method: str, behavior: Behavior, deserializer: Callable[[bytes], Any] | None
) -> Callable[[bytes, grpc.ServicerContext], Iterator[Any]]:
    """_wrap for a server stream of ours (a watch): what its messages raise is answered the
    same way, and its one line comes when it ends (CANCELLED when the client went away
    first). Not run again on a lost connection: the client resumes from its cursor."""

    def wrapped(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        call = _Call(method, context)
        call.admit()
        try:
            yield from behavior(_parse(raw, deserializer), context)
        except GeneratorExit:  # grpcio stopped reading it: the call is over
            call.code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            call.fail(error)
        finally:
            if call.code == grpc.StatusCode.OK and not context.is_active():
                call.code = grpc.StatusCode.CANCELLED
            call.log()

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
