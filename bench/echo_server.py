"""A bare gRPC echo server: the ceiling the service's throughput is compared with.

Same process model as `experiments-server`: the synchronous grpc.server with a
thread pool, one process per worker, all sharing one port with SO_REUSEPORT.
No interceptor, no logging, no protobuf: the method handler returns the request
bytes as they came (serializers are None, so grpcio passes bytes through). What
is left is the cost of HTTP/2, gRPC framing and Python in grpcio, the floor every
RPC of the real server pays.

    python -m bench.echo_server --workers 2 [--threads 16] [--port 0] [--affinity]

Prints `port <n>` once the port is held, then `ready <pid>` per worker. SIGTERM
or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from server.entrypoints.grpc_server import run_worker_processes

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"


def _echo(request: bytes, _context: Any) -> bytes:
    return request


def _serve(port: int, host: str, threads: int, ready: Any) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=[("grpc.so_reuseport", 1)],
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
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
    args = parser.parse_args(argv)

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
            on_claimed=announce,
            affinity=args.affinity,
        )
    )


def _announce_ready(ready: Any, count: int) -> None:
    for _ in range(count):
        print(f"ready {ready.get(timeout=60)}", flush=True)


if __name__ == "__main__":
    main()
