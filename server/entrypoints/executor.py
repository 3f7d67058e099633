"""The threads of a worker process: separate pools for reads, writes, streams and health
checks, each admitting a bounded number of calls and refusing the rest at once.

grpcio's synchronous server runs each RPC on a thread until it ends. Writes get a pool of
their own: a write may wait for the database (SQLite's one writer, a row lock) until its
deadline, and waiting writers must never hold the threads reads need; writes beyond its
threads wait in its queue, holding no thread. A stream (a watch) holds
its thread for as long as it is open, so streams get a pool of their own, sized for the open
streams a worker allows: they never take a thread that unary calls need. Health checks get a
small pool too, so that the gateway's checks are answered while every unary thread is busy
(a busy worker is not a dead one). grpcio picks a method's pool from its handler function's
`experimental_thread_pool` attribute (grpc/_server.py `_select_thread_pool_for_behavior`);
the interceptor sets it (interceptors.py).

A pool admits at most `limit` calls, running or waiting for a thread. A call beyond that is
not queued: it runs at once on the control pool, where the interceptor answers it
RESOURCE_EXHAUSTED (REST 429 with Retry-After) without doing its work. The call learns that
it was refused from a context variable set in its own context, which grpcio runs every call
in (`state.context.run`), so nothing else needs to know about admission.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("experiments.server")

# True in the context of a call that a full pool refused (see AdmissionPool.submit).
REFUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("refused", default=False)

# Health checks and refusals: each is answered in microseconds, so two threads suffice.
CONTROL_THREADS = 2


class AdmissionPool(futures.ThreadPoolExecutor):
    """A thread pool that holds at most `limit` calls, running or queued; a call beyond that
    is marked REFUSED and handed to `overflow`, which runs it (and so refuses it) at once."""

    def __init__(
        self, threads: int, limit: int, overflow: futures.ThreadPoolExecutor, name: str
    ) -> None:
        super().__init__(max_workers=threads, thread_name_prefix=name)
        self.limit = limit
        self._overflow = overflow
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        """Calls running or waiting for a thread now."""
        return self._admitted

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        with self._lock:
            admit = self._admitted < self.limit
            if admit:
                self._admitted += 1
        if not admit:
            context = getattr(fn, "__self__", None)
            if isinstance(context, contextvars.Context):
                context.run(REFUSED.set, True)
                return self._overflow.submit(fn, *args, **kwargs)
            # Not grpcio's calling convention (fn is the call's Context.run): queue it rather
            # than lose the call; tests/integration/test_admission.py would notice.
            with self._lock:
                self._admitted += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _future: futures.Future[Any] | None = None) -> None:
        with self._lock:
            self._admitted -= 1


@dataclass(frozen=True)
class WorkerPools:
    """The pools of one worker process; `unary` (every unary call but writes) is also
    grpcio's default pool."""

    unary: AdmissionPool
    writes: AdmissionPool
    streams: AdmissionPool
    control: futures.ThreadPoolExecutor

    @classmethod
    def create(
        cls, *, threads: int, write_threads: int, max_calls: int, max_streams: int
    ) -> WorkerPools:
        control = futures.ThreadPoolExecutor(CONTROL_THREADS, thread_name_prefix="control")
        return cls(
            unary=AdmissionPool(threads, max_calls, control, "unary"),
            writes=AdmissionPool(write_threads, max_calls, control, "write"),
            # A thread per open stream: idle streams wait on a condition, costing no CPU.
            streams=AdmissionPool(max_streams, max_streams, control, "stream"),
            control=control,
        )

    def shutdown(self) -> None:
        for pool in (self.unary, self.writes, self.streams, self.control):
            pool.shutdown(wait=False, cancel_futures=True)
