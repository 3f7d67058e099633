"""Cross-cutting concerns of every RPC: one log line each, and errors turned into statuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from server.domain import messages
from server.domain.errors import DomainError
from server.entrypoints.errors import rich_status, status_code

log = logging.getLogger("experiments.rpc")

_HEALTH = "/grpc.health.v1.Health/"

Behavior = Callable[[Any, grpc.ServicerContext], Any]


class RpcInterceptor(grpc.ServerInterceptor):
    """Logs method, status and duration of each unary RPC; maps failures to statuses.

    A DomainError is the client's mistake and becomes its status with a safe
    message. Anything else is a bug: logged with its traceback, answered
    INTERNAL with a generic message, so no exception text reaches a client.
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
            _wrap(details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _wrap(method: str, behavior: Behavior) -> Behavior:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return behavior(request, context)
        except DomainError as error:
            code = status_code(error)
            context.abort_with_status(rich_status(error))
        except Exception:
            if not context.is_active():
                # The client went away (cancelled or timed out): nothing to answer, no bug.
                code = grpc.StatusCode.CANCELLED
                return None
            code = grpc.StatusCode.INTERNAL
            log.exception("rpc %s failed", method)
            context.abort(grpc.StatusCode.INTERNAL, messages.INTERNAL)
        finally:
            # Envoy health-checks every second; only real calls deserve an INFO line.
            log.log(
                logging.DEBUG if method.startswith(_HEALTH) else logging.INFO,
                "rpc method=%s status=%s duration_ms=%.2f",
                method,
                code.name,
                (time.perf_counter() - started) * 1000,
            )

    return wrapped
