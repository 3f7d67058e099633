"""`make run`: demo data if the database is empty, then the gRPC server and Envoy until Ctrl-C.

Settings come from the environment (server.config): EXPERIMENTS_DATABASE_URL,
EXPERIMENTS_GRPC_HOST/PORT (127.0.0.1:50051), EXPERIMENTS_HTTP_HOST/PORT (127.0.0.1:8080).
The database must be migrated first (`make run` does it). Ctrl-C or SIGTERM stops the server
gracefully (in-flight calls finish), then Envoy, and exits 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

# Run as a script, so the checkout (gateway/ is not an installed package) goes on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import launcher
from server.config import Settings

SERVICE = "experiments.v5.ExperimentService"
KEY_PLACEHOLDER = "<api-key>"
ORGANIZATION_PLACEHOLDER = "<organization_id>"


class _Stop(Exception):
    """Raised in the main thread by SIGINT, SIGTERM or SIGHUP."""


def main() -> int:
    settings = Settings.from_env()
    # SIGHUP too: the children do not get the terminal's hangup and must not be left behind.
    _raise_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    server: subprocess.Popen[str] | None = None
    envoy: launcher.Envoy | None = None
    workdir = tempfile.TemporaryDirectory(prefix="experiments-gateway-")
    try:
        demo = _demo_world()
        server = launcher.spawn([launcher.console_script("experiments-server")])
        launcher.wait_for_grpc(settings.grpc_host, settings.grpc_port, server)
        config = launcher.render_config(
            http_host=settings.http_host,
            http_port=settings.http_port,
            grpc_host=settings.grpc_host,
            grpc_port=settings.grpc_port,
        )
        envoy = launcher.start_envoy(config, Path(workdir.name))
        envoy.wait_upstream_healthy()
        _print_usage(settings, demo)
        exited = _wait_for_exit(server, envoy.process)
        print(f"{exited} stopped unexpectedly; stopping the rest", file=sys.stderr)
        return 1
    except _Stop:
        return 0
    except launcher.StartupError as error:
        print(f"make run: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"make run: {' '.join(error.cmd)} failed (exit {error.returncode})", file=sys.stderr)
        return 1
    finally:
        # Once stopping, a second Ctrl-C must not cut the graceful stop short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        # The server first, so that its in-flight calls still have Envoy to answer through.
        if server is not None:
            launcher.stop(server)
        if envoy is not None:
            envoy.stop()
        workdir.cleanup()


def _raise_on(*signals: signal.Signals) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise _Stop

    for signum in signals:
        signal.signal(signum, handler)


def _wait_for_exit(server: subprocess.Popen[str], envoy: subprocess.Popen[str]) -> str:
    """Blocks until one of the two processes exits (or a signal raises _Stop); names it."""
    child_exited = threading.Event()
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: child_exited.set())
    while True:
        child_exited.clear()
        if server.poll() is not None:
            return "the gRPC server"
        if envoy.poll() is not None:
            return "Envoy"
        child_exited.wait()


def _demo_world() -> dict[str, Any] | None:
    """The demo world just created in an empty database, or None if it had data already."""
    result = subprocess.run(
        [launcher.console_script("experiments-admin"), "demo", "--if-empty"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    if not result.stdout.strip():
        return None
    demo: dict[str, Any] = json.loads(result.stdout)
    print("Demo data created in the empty database (the keys are shown only this once):")
    print(result.stdout, flush=True)
    return demo


def _print_usage(settings: Settings, demo: dict[str, Any] | None) -> None:
    http = f"http://{_url_host(settings.http_host)}:{settings.http_port}"
    grpc_target = f"{_url_host(settings.grpc_host)}:{settings.grpc_port}"
    if demo is None:
        key, organization = KEY_PLACEHOLDER, ORGANIZATION_PLACEHOLDER
        print(
            "The database already has data. To get an API key, either create a fresh demo\n"
            "world (organizations, users and keys, printed as JSON):\n"
            "  .venv/bin/experiments-admin demo\n"
            "or create them one by one:\n"
            "  .venv/bin/experiments-admin create-organization --name 'Company Inc.'\n"
            "  .venv/bin/experiments-admin create-user --organization-id ORG"
            " --first-name John --last-name Doe\n"
            "  .venv/bin/experiments-admin create-api-key --user-id USER\n"
        )
    else:
        key, organization = demo["tokens"]["settings"], demo["organization_id"]
    collection = f"{http}/api/v5/orgs/{organization}/experiments"
    request = json.dumps({"organization_id": organization})
    print(
        f"Serving the Experiments API\n"
        f"  REST (Envoy): {http}/api/v5/orgs/{{organization_id}}/experiments\n"
        f"  gRPC:         {grpc_target} (server reflection on)\n"
        f"\n"
        f"REST:\n"
        f"  curl -s -H 'Authorization: Token {key}' \\\n"
        f"    '{collection}?page_size=10'\n"
        f"gRPC:\n"
        f"  grpcurl -plaintext -H 'authorization: Token {key}' \\\n"
        f"    -d '{request}' {grpc_target} {SERVICE}/ListExperiments\n"
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
