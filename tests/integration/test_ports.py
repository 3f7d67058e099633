"""Claiming the gRPC port: at once after a server stopped, never beside a live one."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import psutil
import pytest

from gateway import launcher
from server.adapters import schema
from server.entrypoints.grpc_server import PortInUse, claim_port
from tests.ports import port_served

HOST = "127.0.0.1"


TCP_TIME_WAIT = "06"  # the st column of /proc/net/tcp


def connections_in_time_wait(port: int) -> int:
    """Connections in TIME_WAIT whose local end is `port` (grpcio binds IPv6 dual-stack sockets,
    so both tables count)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            if state == TCP_TIME_WAIT and int(local.split(":")[1], 16) == port:
                count += 1
    return count


def test_the_port_of_a_server_that_just_closed_its_connections_is_claimed_at_once() -> None:
    # A stopping server closes its connections first: they stay in TIME_WAIT on its port.
    # Its listener is set up as grpcio sets up the workers' listeners.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        clients = [socket.create_connection((HOST, port)) for _ in range(3)]
        for _ in clients:
            accepted, _address = listener.accept()
            accepted.close()
    for client in clients:
        client.close()
    assert connections_in_time_wait(port) >= 1

    holder = claim_port(HOST, port)

    assert holder.getsockname()[1] == port
    holder.close()


def test_a_port_a_live_server_listens_on_is_refused() -> None:
    # Like grpcio's listener: SO_REUSEPORT, which a careless bind would silently share.
    with socket.socket() as live:
        live.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        live.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        live.bind((HOST, 0))
        live.listen()

        with pytest.raises(PortInUse, match="EXPERIMENTS_GRPC_PORT"):
            claim_port(HOST, live.getsockname()[1])


def test_a_port_another_experiments_server_claimed_is_refused() -> None:
    first = claim_port(HOST, 0)
    try:
        with pytest.raises(PortInUse):
            claim_port(HOST, first.getsockname()[1])
    finally:
        first.close()


def _http2_connection(port: int) -> socket.socket:
    """A connection the server has accepted (it answered the HTTP/2 preface) and that will not
    react when the server closes it."""
    client = socket.create_connection((HOST, port), timeout=10)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    client.sendall(connection.data_to_send())
    while not any(
        isinstance(event, h2.events.RemoteSettingsChanged)
        for event in connection.receive_data(client.recv(65536))
    ):
        pass
    return client


def _serve(port: int, url: str, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as output:
        return launcher.spawn(
            [launcher.console_script("experiments-server")],
            env={
                **os.environ,
                "EXPERIMENTS_DATABASE_URL": url,
                "EXPERIMENTS_GRPC_HOST": HOST,
                "EXPERIMENTS_GRPC_PORT": str(port),
                "EXPERIMENTS_WORKERS": "2",
                # The idle clients below hold the stop for the whole grace; a short one will do.
                "EXPERIMENTS_GRACE_SECONDS": "1",
            },
            output=output,
        )


def test_a_server_restarted_right_after_a_graceful_stop_under_load_serves_at_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'experiments.sqlite3'}"
    schema.upgrade(url)
    first = _serve(0, url, tmp_path / "first.log")
    port = port_served(tmp_path / "first.log", first)
    launcher.wait_for_grpc(HOST, port, first)
    # Clients that hold connections open while the server stops: the server closes them first,
    # so they linger in TIME_WAIT on its port, as Envoy's connections do under load.
    clients = [_http2_connection(port) for _ in range(20)]

    assert launcher.stop(first) == 0
    for client in clients:
        # Read to the server's end first: closing with unread data would reset the connection.
        while client.recv(65536):
            pass
        client.close()
    assert connections_in_time_wait(port) >= 1

    second = _serve(port, url, tmp_path / "second.log")
    try:
        launcher.wait_for_grpc(HOST, port, second, timeout=10)
    finally:
        assert launcher.stop(second) == 0


def test_killing_the_server_stops_its_workers_rather_than_leaving_them_on_the_port(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'experiments.sqlite3'}"
    schema.upgrade(url)
    log = tmp_path / "server.log"
    server = _serve(0, url, log)
    try:
        launcher.wait_for_grpc(HOST, port_served(log, server), server)
        # The two workers: spawned interpreters (multiprocessing's spawn_main), children of it.
        workers = launcher.poll(
            lambda: _exactly_two(
                [
                    c
                    for c in psutil.Process(server.pid).children()
                    if "spawn_main" in str(c.cmdline())
                ]
            ),
            what="two worker processes",
            process=server,
            log=log,
        )
    finally:
        server.kill()  # no signal handler runs: nothing is passed on to the workers
        server.wait()

    gone, alive = psutil.wait_procs(workers, timeout=30)

    assert alive == [] and len(gone) == 2


def _exactly_two(processes: list[psutil.Process]) -> list[psutil.Process] | None:
    return processes if len(processes) == 2 else None
