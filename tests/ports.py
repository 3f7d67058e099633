"""Ports for the servers the tests start: the port a server reports it bound, else an unused one."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from gateway import launcher

# experiments-server's first INFO line, with one process or several (grpc_server.py).
_SERVING = re.compile(r"serving (?:gRPC )?on \S+:(\d+)")


def port_served(log: Path, process: subprocess.Popen[str]) -> int:
    """The port experiments-server, started with port 0 and logging to `log`, says it bound."""

    def reported() -> int | None:
        found = _SERVING.search(log.read_text()) if log.exists() else None
        return int(found.group(1)) if found else None

    return launcher.poll(reported, what="the server's port", process=process, log=log)


def unused_port() -> int:
    """A port nothing listens on right now: only where a port must be known before the program
    that binds it starts (Envoy's upstream, make run's two ports). Another program may take it
    in between, which would fail the test loudly, never pass it wrongly; everywhere else the
    server binds port 0 and reports the port (port_served, Envoy's admin interface)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie has exited; only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
