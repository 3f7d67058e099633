"""Claiming the gRPC port: at once after a server stopped, never beside a live one."""

from __future__ import annotations

import socket
import subprocess

import pytest

from server.entrypoints.grpc_server import PortInUse, claim_port

HOST = "127.0.0.1"


def connections_in_time_wait(port: int) -> int:
    result = subprocess.run(
        ["ss", "-tan", "state", "time-wait", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    return len(result.stdout.splitlines()) - 1


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
