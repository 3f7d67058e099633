"""`make run`: migrate, start the gRPC server and Envoy, then demo data if the database was
empty; serve until Ctrl-C.

Settings come from the environment (server.config): EXPERIMENTS_DATABASE_URL,
EXPERIMENTS_GRPC_HOST/PORT (127.0.0.1:50051), EXPERIMENTS_HTTP_HOST/PORT (127.0.0.1:8080).
Each step prints one line; a step that fails ends with one line saying why. Ctrl-C or SIGTERM
stops the server gracefully (in-flight calls finish), then Envoy, and exits 0. If this process
is killed outright (SIGKILL), the kernel stops both children (launcher.spawn).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from gateway import launcher
from server.adapters.database import DatabaseUnusable, engine_url
from server.config import ConfigError, Settings

SERVICE = "experiments.v5.ExperimentService"
KEY_PLACEHOLDER = "<api-key>"
ORGANIZATION_PLACEHOLDER = "<organization_id>"
GOAL_PLACEHOLDER = "<goal_id>"


class Stop(Exception):
    """Raised in the main thread by SIGINT, SIGTERM or SIGHUP."""


def main() -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    # SIGHUP too: the children do not get the terminal's hangup and must not be left behind.
    raise_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    server: subprocess.Popen[str] | None = None
    envoy: launcher.Envoy | None = None
    workdir = tempfile.TemporaryDirectory(prefix="experiments-gateway-")
    try:
        step(f"Migrating the database ({shown(settings.database_url)})")
        admin("migrate")
        # Before the server starts, so that a busy port is the last line printed.
        _check_http_port_free(settings.http_host, settings.http_port)
        step(f"Starting the gRPC server on {settings.grpc_host}:{settings.grpc_port}")
        # One instance: no other to take its calls, so a stop need not drain unless asked to.
        server = launcher.spawn(
            [launcher.console_script("experiments-server")],
            env={"EXPERIMENTS_DRAIN_SECONDS": "0", **os.environ},
        )
        launcher.wait_for_grpc(settings.grpc_host, settings.grpc_port, server)
        step(f"Starting Envoy (REST) on {settings.http_host}:{settings.http_port}")
        config = launcher.render_config(
            http_host=settings.http_host,
            http_port=settings.http_port,
            grpc_host=settings.grpc_host,
            grpc_port=settings.grpc_port,
            cors_origins=settings.cors_origins,
        )
        envoy = launcher.start_envoy(config, Path(workdir.name))
        envoy.wait_upstream_healthy()
        # Only now, with the service up, so that the keys are not lost above a startup error.
        demo = _demo_world()
        _print_usage(settings, demo)
        exited = wait_for_exit({"the gRPC server": server, "Envoy": envoy.process})
        print(f"{exited} stopped unexpectedly; stopping the rest", file=sys.stderr)
        return 1
    except Stop:
        return 0
    except launcher.StartupError as error:
        if server is not None and envoy is None and server.poll() is not None:
            # The server said why in one line (a busy EXPERIMENTS_GRPC_PORT, say); adding ours
            # would bury it.
            return 1
        print(f"make run: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        # The command printed its own one-line reason.
        return error.returncode or 1
    finally:
        ignore_stop_signals()
        # The server first, so that its in-flight calls still have Envoy to answer through.
        if server is not None:
            launcher.stop(server, timeout=settings.grace_seconds + launcher.STOP_TIMEOUT)
        if envoy is not None:
            envoy.stop()
        workdir.cleanup()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def ignore_stop_signals() -> None:
    """Once stopping, a second Ctrl-C must not cut the graceful stop short."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def raise_on(*signals: signal.Signals) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise Stop

    for signum in signals:
        signal.signal(signum, handler)


def wait_for_exit(processes: Mapping[str, subprocess.Popen[str]]) -> str:
    """Blocks until one of the processes exits (or a signal raises Stop); returns its name."""
    child_exited = threading.Event()
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: child_exited.set())
    while True:
        child_exited.clear()
        for name, process in processes.items():
            if process.poll() is not None:
                return name
        child_exited.wait()


def step(what: str, command: str = "make run") -> None:
    print(f"{command}: {what}...", flush=True)


def shown(url: str) -> str:
    """The database URL without its password."""
    try:
        return engine_url(url).render_as_string(hide_password=True)
    except DatabaseUnusable:
        return "EXPERIMENTS_DATABASE_URL"


def admin(*args: str) -> str:
    """Runs experiments-admin; its stderr (a one-line reason on failure) goes to the terminal."""
    result = subprocess.run(
        [launcher.console_script("experiments-admin"), *args],
        # Its INFO lines (each migration step) would bury make run's own progress lines.
        env={**os.environ, "EXPERIMENTS_LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return result.stdout


def _check_http_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise launcher.StartupError(
                    f"the HTTP port {host}:{port} is already in use by another program; "
                    "stop it or choose another EXPERIMENTS_HTTP_PORT"
                ) from None
            raise


def _demo_world() -> dict[str, Any] | None:
    """The demo world just created in an empty database, or None if it had data already."""
    output = admin("demo", "--if-empty")
    if not output.strip():
        return None
    demo: dict[str, Any] = json.loads(output)
    print(
        "Demo data created in the empty database. Keep these keys; "
        "`.venv/bin/experiments-admin demo` prints a fresh set at any time:"
    )
    print(output, flush=True)
    return demo


def _print_usage(settings: Settings, demo: dict[str, Any] | None) -> None:
    http = f"http://{_url_host(settings.http_host)}:{settings.http_port}"
    grpc_target = f"{_url_host(settings.grpc_host)}:{settings.grpc_port}"
    if demo is None:
        key, organization = KEY_PLACEHOLDER, ORGANIZATION_PLACEHOLDER
        goal, rooms = GOAL_PLACEHOLDER, []
        print(
            "The database already has data. To get an API key, either create a fresh demo\n"
            "world (organizations, goal, rooms, users and keys, printed as JSON):\n"
            "  .venv/bin/experiments-admin demo\n"
            "or create them one by one:\n"
            "  .venv/bin/experiments-admin create-organization --name 'Company Inc.'\n"
            "  .venv/bin/experiments-admin create-user --organization-id ORG"
            " --first-name John --last-name Doe\n"
            "  .venv/bin/experiments-admin create-api-key --user-id USER\n"
        )
    else:
        key, organization = demo["tokens"]["settings"], demo["organization_id"]
        goal, rooms = demo["goal_id"], demo["room_ids"]
    collection = f"{http}/api/v5/orgs/{organization}/experiments"
    request = json.dumps({"organization_id": organization})
    experiment = json.dumps(
        {
            "is_draft": False,
            "name": "Hello experiment",
            "goal_id": goal,
            "room_ids": rooms,
            "starts_at": "2030-05-08T13:02:35.123Z",
            "groups": [
                {
                    "name": "A",
                    "percentage": 90,
                    "group_type": "control",
                    "treatment": {"name": "Rule-A", "actions": [], "conditions": []},
                },
                {"name": "B", "percentage": 10, "group_type": "user_defined"},
            ],
        }
    )
    print(
        f"Serving the Experiments API\n"
        f"  REST (Envoy): {http}/api/v5/orgs/{{organization_id}}/experiments\n"
        f"  gRPC:         {grpc_target} (server reflection on)\n"
        f"\n"
        f"REST, list and create:\n"
        f"  curl -s -H 'Authorization: Token {key}' \\\n"
        f"    '{collection}?page_size=10'\n"
        f"  curl -s -X POST -H 'Authorization: Token {key}' \\\n"
        f"    -H 'Content-Type: application/json' '{collection}' \\\n"
        f"    -d '{experiment}'\n"
        f"gRPC (buf comes from npm, pinned in clients/typescript, which `make test` installs):\n"
        f"  npx @bufbuild/buf curl --protocol grpc --http2-prior-knowledge \\\n"
        f"    -H 'authorization: Token {key}' -d '{request}' \\\n"
        f"    http://{grpc_target}/{SERVICE}/ListExperiments\n"
        f"\n"
        f"Press Ctrl-C to stop.",
        flush=True,
    )


def _url_host(host: str) -> str:
    address = launcher.connectable_host(host)
    return f"[{address}]" if ":" in address else address


if __name__ == "__main__":
    sys.exit(main())
