"""`make run-cluster INSTANCES=N`: a local trial of several instances on one PostgreSQL.

Migrates EXPERIMENTS_DATABASE_URL (PostgreSQL only: SQLite is one file on one machine, so it is
refused with one line), starts N `experiments-server` instances on EXPERIMENTS_GRPC_PORT,
EXPERIMENTS_GRPC_PORT+1, ... and `experiments-gateway` in front of them on EXPERIMENTS_HTTP_PORT,
printing each instance's port and PID, so that one can be killed (SIGKILL) or stopped (SIGTERM,
it drains for EXPERIMENTS_DRAIN_SECONDS) while clients call the gateway. Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from gateway import launcher, run
from server.adapters.database import DatabaseUnusable, engine_url
from server.config import ConfigError, Settings

COMMAND = "make run-cluster"
SQLITE_REFUSED = (
    "make run-cluster: EXPERIMENTS_DATABASE_URL is SQLite, a file on one machine; several "
    "instances need one PostgreSQL (EXPERIMENTS_DATABASE_URL=postgresql+psycopg://...)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        backend = engine_url(settings.database_url).get_backend_name()
    except (ConfigError, DatabaseUnusable) as error:
        print(f"make run-cluster: {error}", file=sys.stderr)
        return 1
    if backend != "postgresql":
        print(SQLITE_REFUSED, file=sys.stderr)
        return 1
    run.raise_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    children: list[subprocess.Popen[str]] = []
    gateway: subprocess.Popen[str] | None = None
    try:
        run.step(f"Migrating the database ({run.shown(settings.database_url)})", COMMAND)
        run.admin("migrate")
        ports = [settings.grpc_port + n for n in range(args.instances)]
        for number, port in enumerate(ports, start=1):
            instance = launcher.spawn(
                [launcher.console_script("experiments-server")],
                env={**os.environ, "EXPERIMENTS_GRPC_PORT": str(port)},
            )
            children.append(instance)
            launcher.wait_for_grpc(settings.grpc_host, port, instance)
            print(f"instance {number}: {settings.grpc_host}:{port}, PID {instance.pid}", flush=True)
        upstreams = ",".join(
            f"{launcher.connectable_host(settings.grpc_host)}:{port}" for port in ports
        )
        gateway = launcher.spawn(
            [launcher.console_script("experiments-gateway")],
            env={**os.environ, "EXPERIMENTS_UPSTREAMS": upstreams},
        )
        print(
            f"Kill one (kill -9 PID) or stop one (kill PID: it drains for "
            f"{settings.drain_seconds:g} s) while calling the gateway; Ctrl-C stops them all.",
            flush=True,
        )
        named = {f"instance {n}": child for n, child in enumerate(children, start=1)}
        exited = run.wait_for_exit({**named, "experiments-gateway": gateway})
        print(f"{exited} stopped unexpectedly; stopping the rest", file=sys.stderr)
        return 1
    except run.Stop:
        return 0
    except launcher.StartupError as error:
        print(f"make run-cluster: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        return error.returncode or 1
    finally:
        run.ignore_stop_signals()
        # The instances drain together; the gateway last, so that their calls in flight still
        # reach clients.
        for child in children:
            child.terminate()
        for child in children:
            launcher.stop(
                child,
                timeout=settings.drain_seconds + settings.grace_seconds + launcher.STOP_TIMEOUT,
            )
        if gateway is not None:
            launcher.stop(gateway)


if __name__ == "__main__":
    sys.exit(main())
