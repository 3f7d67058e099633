"""A bare gRPC echo server: the ceiling the service's throughput is compared with.

Same process model as `experiments-server`: the synchronous grpc.server with a
thread pool, one process per worker, all sharing one port with SO_REUSEPORT.
No interceptor, no logging, no protobuf: the method handler returns the request
bytes as they came (serializers are None, so grpcio passes bytes through). What
is left is the cost of HTTP/2, gRPC framing and Python in grpcio, the floor every
RPC of the real server pays.

    python -m bench.echo_server --workers 2 [--threads 16] [--port 0] [--affinity]
        [--assign-from DATABASE_URL --organization ID]

Prints `port <n>` once the port is held, then `ready <pid>` per worker. SIGTERM
or SIGINT stops it.

With `--assign-from`, it also serves AssignVisitor's own work and nothing else, on the same
server: the organization's running experiments read once from the database as the service's
cache keeps them, and per call the request parsed, its fields checked, the visitor assigned
in each experiment and the answer assembled, with the service's own functions
(domain.assignment, entrypoints.assignments). No API key, interceptor, log line, admission
or feed: the most any implementation of the call on this process model can serve (the
"assignment floor" of `make bench`, bench/README.md).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import threading
from concurrent import futures
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import create_engine

from server.adapters.views import SqlAlchemyExperimentViews
from server.domain.assignment import assign_all, checked_request, micros
from server.entrypoints.assignments import assignments_response, at_of, running_of_view
from server.entrypoints.grpc_server import SERVICE_NAME, run_worker_processes
from server.service_layer.assignments import Running

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"


def _echo(request: bytes, _context: Any) -> bytes:
    return request


def _running(database_url: str, organization_id: UUID) -> tuple[Running, ...]:
    """The organization's running experiments, as the service's assignment cache keeps them."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            views = SqlAlchemyExperimentViews(connection, None).running(
                organization_id, datetime.now(UTC)
            )
    finally:
        engine.dispose()
    found = (running_of_view(message) for message in views.messages)
    return tuple(experiment for experiment in found if experiment is not None)


def _assigning(experiments: tuple[Running, ...]) -> Any:
    """AssignVisitor's own work, as ExperimentServicer.AssignVisitor and
    ExperimentService.assign do it once the key is known and the cache holds the experiments."""

    def assign(raw: bytes, _context: Any) -> bytes:
        request = pb.AssignVisitorRequest.FromString(raw)
        checked = checked_request(request.visitor_id, request.room_id, at_of(request))
        moment = micros(datetime.now(UTC)) if checked.at is None else checked.at
        return assignments_response(
            assign_all(experiments, checked.visitor, checked.room_id, moment)
        )

    return assign


def _serve(
    port: int, host: str, threads: int, ready: Any, assign_from: tuple[str, UUID] | None
) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=[("grpc.so_reuseport", 1)],
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    if assign_from is not None:
        work = _assigning(_running(*assign_from))
        assign: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(work)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, {"AssignVisitor": assign}),)
        )
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready.put(os.getpid())
    stop.wait()
    server.stop(1).wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=16, help="thread pool size per worker")
    parser.add_argument(
        "--affinity", action="store_true", help="pin each worker to a CPU of its own"
    )
    parser.add_argument(
        "--assign-from", metavar="DATABASE_URL", help="also serve AssignVisitor's work alone"
    )
    parser.add_argument("--organization", type=UUID, help="whose experiments --assign-from reads")
    args = parser.parse_args(argv)
    if bool(args.assign_from) != bool(args.organization):
        parser.error("--assign-from and --organization go together")
    assign_from = (args.assign_from, args.organization) if args.assign_from else None

    context = multiprocessing.get_context("spawn")
    ready = context.Queue()

    def announce(port: int) -> None:
        print(f"port {port}", flush=True)
        # Readiness is printed from a thread while the supervisor waits on its workers.
        threading.Thread(target=_announce_ready, args=(ready, args.workers), daemon=True).start()

    sys.exit(
        run_worker_processes(
            args.host,
            args.port,
            args.workers,
            _serve,
            args.host,
            args.threads,
            ready,
            assign_from,
            on_claimed=announce,
            affinity=args.affinity,
        )
    )


def _announce_ready(ready: Any, count: int) -> None:
    for _ in range(count):
        print(f"ready {ready.get(timeout=60)}", flush=True)


if __name__ == "__main__":
    main()
