"""The `experiments-server` command: one server factory, N worker processes, graceful stop.

The server is the synchronous grpc.server, run as one process per core sharing
the port (SO_REUSEPORT): the GIL lets one Python process use one core, and the
sync server measured twice the throughput of grpc.aio per process here, with
SQLAlchemy's sync API used as designed (see README, "Why sync gRPC").
"""

from __future__ import annotations

import argparse
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from types import FrameType
from typing import Any
from uuid import UUID

import grpc
from experiments.v5 import experiments_pb2, experiments_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.adapters.checkpoints import WalCheckpointer
from server.adapters.database import DatabaseUnusable, check_database, make_engine
from server.adapters.repositories.principal_cache import PrincipalCache
from server.adapters.unit_of_work import SqlAlchemyReadUnitOfWork, SqlAlchemyUnitOfWork
from server.config import ConfigError, Settings
from server.domain import limits
from server.entrypoints.assignments import READING
from server.entrypoints.executor import WorkerPools
from server.entrypoints.interceptors import RpcInterceptor
from server.entrypoints.logs import configure_logging
from server.entrypoints.processes import stop_with_parent
from server.entrypoints.servicer import ExperimentServicer
from server.entrypoints.translate import RENDERER, revision_record
from server.service_layer.assignments import AssignmentCache
from server.service_layer.experiments import ExperimentService
from server.service_layer.feed import FeedFollower
from server.service_layer.ports import RunningViews
from server.service_layer.watches import AccessChecks

log = logging.getLogger("experiments.server")

SERVICE_NAME = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"].full_name
# Connections of a worker's feed reads (as many again on overflow): the follower's polls,
# watches starting, catching up from the database and checking their keys again. Each holds
# one for a single statement; a watch that waits for one beyond the pool's timeout ends
# UNAVAILABLE.
FEED_CONNECTIONS = 3


class PortInUse(Exception):
    """Another program holds the gRPC port; the message says which setting to change."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"{host}:{port} is already in use by another program; "
            "stop it or choose another EXPERIMENTS_GRPC_PORT"
        )


# What `main` (and each worker process) turns into one line on stderr and exit code 1.
StartupProblem = (ConfigError, DatabaseUnusable, PortInUse)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    pools: WorkerPools
    follower: FeedFollower
    access_checks: AccessChecks
    checkpointer: WalCheckpointer | None
    grace: float
    # The use cases behind the RPCs, for callers in this process (bench/write_floor.py).
    service: ExperimentService

    def stop(self, grace: float | None = None) -> None:
        """Reports NOT_SERVING, ends every watch at once (UNAVAILABLE: its client resumes from
        its cursor elsewhere; a watch never finishes by itself, so waiting for it would only
        hold the grace period), refuses new RPCs and lets the unary ones in flight finish
        (for `grace` seconds, settings.grace_seconds unless given)."""
        self.health.enter_graceful_shutdown()
        self.follower.close()
        self.access_checks.close()
        self.server.stop(self.grace if grace is None else grace).wait()
        self.pools.shutdown()
        if self.checkpointer is not None:
            self.checkpointer.stop()


def build_server(settings: Settings, *, reuse_port: bool = False) -> RunningServer:
    """Builds and starts a server on settings.grpc_host:grpc_port (0 picks a free port)."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.write_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    # SQLite: the WAL is copied back into the file by a thread, not by a write holding the writer.
    checkpointer = WalCheckpointer.for_engine(engine)
    # Reads get their own pool, whose connections refuse writes (see make_engine); a Create
    # prepares on it too, from a write thread.
    read_engine = make_engine(
        settings.database_url,
        pool_size=settings.read_pool_size,
        max_overflow=settings.database_max_overflow,
        read_only=True,
    )
    # The feed's reads (the follower, watches catching up, their key checks) get a small pool
    # of their own: a burst of watches never takes the connections unary reads need.
    feed_engine = make_engine(
        settings.database_url,
        pool_size=FEED_CONNECTIONS,
        max_overflow=FEED_CONNECTIONS,
        read_only=True,
    )
    principals = PrincipalCache(settings.auth_cache_seconds)

    def feed_reads() -> SqlAlchemyReadUnitOfWork:
        return SqlAlchemyReadUnitOfWork(feed_engine, principal_cache=principals)

    follower = FeedFollower(feed_reads, poll_seconds=settings.feed_poll_seconds)
    access_checks = AccessChecks(feed_reads)

    def running_views(organization_id: UUID, not_ended_at: datetime) -> RunningViews:
        with feed_reads() as uow:
            return uow.views.running(organization_id, not_ended_at)

    # Before the follower starts, so that it sees every batch the follower reads.
    assignments = AssignmentCache(follower, running_views, READING)
    service = ExperimentService(
        # The read model's views and the revisions are rendered by translate: the entrypoint's
        # renderers given here keep protobuf out of the adapters and the service layer.
        lambda: SqlAlchemyUnitOfWork(engine, renderer=RENDERER, principal_cache=principals),
        lambda: SqlAlchemyReadUnitOfWork(read_engine, principal_cache=principals),
        render=RENDERER.view,
        record=revision_record,
        follower=follower,
        access_checks=access_checks,
        feed_unit_of_work=feed_reads,
        heartbeat_seconds=settings.watch_heartbeat_seconds,
        assignments=assignments,
    )
    pools = WorkerPools.create(
        threads=settings.threads,
        write_threads=settings.write_threads,
        max_calls=settings.max_calls,
        max_streams=settings.max_streams,
    )
    server = grpc.server(
        pools.unary,
        interceptors=[RpcInterceptor(pools)],
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # Above our own limit, so that the interceptor refuses in our words whatever the
            # gateway can send (limits.MAX_RECEIVED_BYTES); only larger ones get grpcio's
            # RESOURCE_EXHAUSTED, before the message is received.
            ("grpc.max_receive_message_length", limits.MAX_RECEIVED_BYTES),
            # Likewise for headers: grpcio's default soft limit (8 KiB) refused at random and
            # with RESOURCE_EXHAUSTED ("retry later"). Soft and hard the same, far above
            # limits.MAX_HEADER_BYTES, which the interceptor enforces in our words.
            ("grpc.max_metadata_size", limits.GRPC_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", limits.GRPC_METADATA_BYTES),
        ],
    )
    experiments_pb2_grpc.add_ExperimentServiceServicer_to_server(
        ExperimentServicer(service, settings.public_base_url), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    except RuntimeError:
        raise PortInUse(settings.grpc_host, settings.grpc_port) from None
    follower.start()
    access_checks.start()
    if checkpointer is not None:
        checkpointer.start()
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(
        server,
        port,
        health_servicer,
        pools,
        follower,
        access_checks,
        checkpointer,
        settings.grace_seconds,
        service,
    )


def claim_port(host: str, port: int) -> socket.socket:
    """Fails clearly if any program holds the port, then keeps it for our workers only.

    grpcio sets SO_REUSEPORT, so a second server on a taken port would bind
    silently and steal half the traffic. A bind without SO_REUSEPORT detects any
    holder; the socket we then keep (SO_REUSEPORT, never listening) receives no
    connections but makes the next such bind, such as another experiments-server,
    fail. The probe sets SO_REUSEADDR: the connections of a server that just
    stopped linger in TIME_WAIT on the port (grpcio's sockets have SO_REUSEADDR
    and SO_REUSEPORT), and they must not keep its successor from starting.
    SO_REUSEADDR never lets a bind share a port that a live socket listens on,
    nor one the holder (without SO_REUSEADDR) keeps.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from None
            raise
        port = probe.getsockname()[1]
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError:
        holder.close()
        raise PortInUse(host, port) from None
    return holder


def _serve_until_signalled(settings: Settings, *, reuse_port: bool) -> None:
    running = build_server(settings, reuse_port=reuse_port)
    log.info("serving gRPC on %s:%s", settings.grpc_host, running.port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping gracefully", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    if settings.drain_seconds > 0:
        # Still serving, as NOT_SERVING: the gateway's health check and clients' health watches
        # move new calls to other instances meanwhile. A second signal cuts the drain short.
        running.health.enter_graceful_shutdown()
        log.info("draining for %g s before stopping", settings.drain_seconds)
        stop.clear()
        stop.wait(settings.drain_seconds)
    running.stop()
    log.info("stopped")


def _worker(port: int, settings: Settings) -> None:
    """A worker process's main function."""
    configure_logging(settings.log_level)
    try:
        _serve_until_signalled(replace(settings, grpc_port=port), reuse_port=True)
    except StartupProblem as error:
        raise SystemExit(f"experiments-server: {error}") from None


def serve(settings: Settings) -> int:
    """Serves until SIGTERM or SIGINT; raises one of StartupProblem if it cannot start."""
    check_database(settings.database_url)
    if settings.workers <= 1:
        _serve_until_signalled(settings, reuse_port=False)
        return 0
    return run_worker_processes(
        settings.grpc_host,
        settings.grpc_port,
        settings.workers,
        _worker,
        settings,
        affinity=settings.worker_affinity,
    )


def run_worker_processes(
    host: str,
    port: int,
    count: int,
    target: Callable[..., None],
    *args: Any,
    on_claimed: Callable[[int], None] | None = None,
    affinity: bool = False,
) -> int:
    """Runs `target(port, *args)` in `count` processes that share host:port (SO_REUSEPORT).

    The port is claimed first (see claim_port). SIGTERM or SIGINT is passed on to
    every worker, which drains; if one worker dies the others are stopped and the
    exit code is 1. bench/echo_server.py reuses this for the same process model.
    With `affinity`, worker n runs on the n-th CPU this process may use (modulo their
    number) and nowhere else: with a worker per core, each keeps its core's caches and
    none migrates onto another's (settings.worker_affinity).
    """
    holder = claim_port(host, port)
    port = holder.getsockname()[1]
    if on_claimed is not None:
        on_claimed(port)
    cpus = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_run_worker,
            args=(os.getpid(), cpus[n % len(cpus)] if affinity else None, target, port, *args),
            name=f"worker-{n}",
        )
        for n in range(count)
    ]
    stopping = threading.Event()

    def forward(_signum: int, _frame: FrameType | None) -> None:
        # Each worker drains on SIGTERM (Ctrl-C already reaches the whole process group).
        stopping.set()
        for worker in workers:
            if worker.pid is not None:
                worker.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        if stopping.is_set():
            break  # a signal came while starting: start no more
        worker.start()
        if stopping.is_set():
            # The signal came during start(), before forward() could see this worker's pid;
            # left running, it would keep this process waiting for it forever.
            worker.terminate()
    log.info("serving on %s:%s with %d worker processes", host, port, count)
    exit_code = 0
    for worker in workers:
        if worker.pid is None:
            continue  # never started
        worker.join()
        if worker.exitcode and not stopping.is_set():
            log.error("%s exited with %s; stopping the others", worker.name, worker.exitcode)
            exit_code = 1
            stopping.set()
            for other in workers:
                other.terminate()
    holder.close()
    return exit_code


def _run_worker(parent: int, cpu: int | None, target: Callable[..., None], *args: Any) -> None:
    """A worker process: it ends with this process even if that one is killed (SIGKILL gives
    no chance to pass the signal on), rather than serving on, orphaned, on the port. Pinned
    to `cpu` if given, before any thread starts (threads inherit it)."""
    stop_with_parent(parent)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    target(*args)


def main(argv: list[str] | None = None) -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise SystemExit(f"experiments-server: {error}") from None
    parser = argparse.ArgumentParser(description="Serve the Experiments gRPC API.")
    parser.add_argument(
        "--port",
        type=int,
        default=settings.grpc_port,
        help="gRPC port (EXPERIMENTS_GRPC_PORT, default 50051)",
    )
    parser.add_argument(
        "--host",
        default=settings.grpc_host,
        help="address to bind (EXPERIMENTS_GRPC_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=settings.workers,
        help="worker processes sharing the port (EXPERIMENTS_WORKERS, default: CPUs)",
    )
    args = parser.parse_args(argv)
    settings = replace(settings, grpc_port=args.port, grpc_host=args.host, workers=args.workers)
    configure_logging(settings.log_level)
    try:
        exit_code = serve(settings)
    except StartupProblem as error:
        raise SystemExit(f"experiments-server: {error}") from None
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
