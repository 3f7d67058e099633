"""The processes under test: a fresh database, the echo ceiling, experiments-server and Envoy.

Processes are started and stopped with the gateway's launcher (gateway/launcher.py), as
`make run` and the end-to-end tests do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from sqlalchemy.engine import make_url

from bench import procstats
from gateway import launcher
from tests.temporary_database import temporary_postgres_database

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"


@contextmanager
def fresh_database(url: str | None, workdir: Path, label: str, keep: bool) -> Iterator[str]:
    """A new, empty database for one run, removed afterwards unless `keep`.

    SQLite: a file in the run's folder (or the file of an SQLite `url`, which must not
    exist yet). PostgreSQL: a new database on the server of `url`, dropped at the end.
    """
    if url is None or make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database or "") if url else workdir / f"{label}.sqlite3"
        if url and path.exists():
            raise RuntimeError(f"{path} exists; the benchmark needs a fresh database")
        try:
            yield f"sqlite:///{path}"
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    # A random suffix keeps concurrent runs apart; the database of `url` itself is not touched.
    with temporary_postgres_database(url, prefix=f"experiments_bench_{label}", keep=keep) as fresh:
        yield fresh


@dataclass
class Echo:
    process: subprocess.Popen[str]
    port: int
    workers: tuple[int, ...]

    @property
    def processes(self) -> tuple[int, ...]:
        return (self.process.pid, *self.workers)

    def stop(self) -> None:
        launcher.stop(self.process)


def start_echo(
    workers: int, threads: int, *, affinity: bool, assign_from: tuple[str, UUID] | None = None
) -> Echo:
    """The echo ceiling; returns once every worker serves. With `assign_from` (a database URL
    and an organization), it serves AssignVisitor's work alone too (bench/echo_server.py)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.echo_server",
            f"--workers={workers}",
            f"--threads={threads}",
            *(["--affinity"] if affinity else []),
            *(
                [f"--assign-from={assign_from[0]}", f"--organization={assign_from[1]}"]
                if assign_from
                else []
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=BENCH_DIR.parent,
    )
    assert process.stdout is not None
    port = 0
    pids: list[int] = []
    for line in process.stdout:
        kind, _, value = line.partition(" ")
        if kind == "port":
            port = int(value)
        elif kind == "ready":
            pids.append(int(value))
        if port and len(pids) == workers:
            break
    else:
        raise launcher.StartupError(f"echo server exited with {process.wait()}")
    return Echo(process, port, tuple(pids))


# The interceptor's line per RPC (server/entrypoints/interceptors.py).
_RPC_LINE = re.compile(rb"rpc method=(\S+) status=(\w+)")
_SERVICE_RPC = b"rpc method=/experiments."
# What each worker logs once it serves, with the port it bound (server/entrypoints/grpc_server.py).
_WORKER_SERVING = re.compile(rb"^.* serving gRPC on \S+:(\d+)$", re.M)


class RpcLog:
    """The server's log, where each RPC leaves `rpc method=... status=...` (at INFO)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def size(self) -> int:
        return self.path.stat().st_size

    def settle(self, quiet: float = 0.3, timeout: float = 30.0) -> int:
        """Waits until no RPC of the service has been logged for `quiet` seconds (calls
        still running when a load stopped have finished); returns the log's size then.
        Health checks (Envoy's, every second) do not count."""
        deadline = time.monotonic() + timeout
        size = self.size()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.size()
            with self.path.open("rb") as log:
                log.seek(size)
                fresh = log.read(now - size)
            size = now
            if _SERVICE_RPC not in fresh:
                return size
        return size

    def calls(self, start: int, end: int) -> list[tuple[str, str]]:
        """(method, status) of every RPC logged between two sizes of the log, in order."""
        with self.path.open("rb") as log:
            log.seek(start)
            chunk = log.read(end - start)
        return [(method.decode(), status.decode()) for method, status in _RPC_LINE.findall(chunk)]

    def serving_ports(self) -> list[int]:
        """The port of each worker that serves so far (the same port for all of them)."""
        return [int(port) for port in _WORKER_SERVING.findall(self.path.read_bytes())]


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: RpcLog
    workers: tuple[int, ...]

    @property
    def processes(self) -> tuple[int, ...]:
        # With one worker, the worker is the server process itself.
        return tuple(sorted({self.process.pid, *self.workers}))

    def stop(self) -> int:
        return launcher.stop(self.process)


def service_environment() -> dict[str, str]:
    """The environment the bench runs experiments-server in: the caller's, with each worker
    pinned to a CPU of its own as the echo ceiling's are (EXPERIMENTS_WORKER_AFFINITY=1)
    unless the caller set EXPERIMENTS_WORKER_AFFINITY: the service is compared with the
    ceiling on the same process model, as on a machine of its own. The service's own default
    stays unpinned (README, "Configuration")."""
    return {"EXPERIMENTS_WORKER_AFFINITY": "1", **os.environ}


def start_server(database: str, workers: int, workdir: Path, label: str) -> Server:
    """experiments-server with `workers` processes on a port the kernel picks; returns once
    each of them serves."""
    log_path = workdir / f"{label}.server.log"
    env = {
        **service_environment(),
        "EXPERIMENTS_DATABASE_URL": database,
        "EXPERIMENTS_GRPC_HOST": HOST,
        "EXPERIMENTS_GRPC_PORT": "0",
        "EXPERIMENTS_WORKERS": str(workers),
        # One line per RPC with its status: how the benchmark knows every call succeeded.
        "EXPERIMENTS_LOG_LEVEL": "INFO",
    }
    with log_path.open("a") as output:
        process = launcher.spawn(
            [launcher.console_script("experiments-server"), f"--workers={workers}"],
            env=env,
            output=output,
        )
    log = RpcLog(log_path)
    try:
        # Each worker logs the port once it serves; wait for all of them.
        ports = launcher.poll(
            lambda: _exactly(log.serving_ports(), workers),
            what=f"{workers} server workers",
            process=process,
            log=log_path,
        )
        port = ports[0]
        launcher.wait_for_grpc(HOST, port, process, log=log_path)
        # One worker is the server process itself (experiments-server does not fork then).
        pids = [process.pid]
        if workers > 1:
            pids = launcher.poll(
                lambda: _exactly(procstats.spawned_workers(process.pid), workers),
                what="server worker processes",
                process=process,
                log=log_path,
            )
    except BaseException:
        launcher.stop(process)
        raise
    return Server(process, port, log, tuple(pids))


def _exactly(pids: list[int], count: int) -> list[int] | None:
    return pids if len(pids) == count else None


def start_gateway(server: Server, workdir: Path, label: str) -> launcher.Envoy:
    """Envoy from gateway/envoy.yaml in front of `server`, on a free port, upstream healthy."""
    config = launcher.render_config(
        http_host=HOST, http_port=0, grpc_host=HOST, grpc_port=server.port
    )
    log_path = workdir / f"{label}.envoy.log"
    with log_path.open("a") as output:
        envoy = launcher.start_envoy(
            config, workdir / f"{label}-envoy", output=output, log=log_path
        )
    envoy.wait_upstream_healthy()
    return envoy
