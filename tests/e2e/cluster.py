"""Several `experiments-server` instances on one PostgreSQL database behind `experiments-gateway`,
as a team runs them on several machines: here on 127.0.0.1, 127.0.0.2 and 127.0.0.3, one port,
and one DNS name for all of them (tests/dns_server.py), which the gateway and direct grpcio
clients both resolve.

Each instance is one process (EXPERIMENTS_WORKERS=1), so SIGKILL kills it outright, and it
drains for the documented EXPERIMENTS_DRAIN_SECONDS on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from gateway import launcher
from server.adapters import schema
from server.config import Settings
from tests.dns_server import DnsServer
from tests.e2e.stack import World, new_world
from tests.ports import unused_port

NAME = "experiments.test"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SERVICE_CONFIG = Path(__file__).resolve().parents[2] / "clients" / "grpc-service-config.json"
_LISTENING = re.compile(r"REST and gRPC on \S+:(\d+), .* on (\S+)\n")


class Cluster:
    def __init__(self, workdir: Path, database_url: str, *, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.database_url = database_url
        self.port = unused_port()
        self.dns = DnsServer(NAME, ADDRESSES)
        schema.upgrade(database_url)
        self.env = {
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": database_url,
            "EXPERIMENTS_GRPC_PORT": str(self.port),
            "EXPERIMENTS_WORKERS": "1",
            # The documented default, which the test run otherwise sets to 0 (tests/conftest.py).
            "EXPERIMENTS_DRAIN_SECONDS": f"{Settings().drain_seconds:g}",
            **(env or {}),
        }
        self.instances: dict[str, subprocess.Popen[str]] = {}
        self.gateway: subprocess.Popen[str] | None = None
        self.gateway_port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    @property
    def direct_target(self) -> str:
        """The instances by their DNS name, for grpcio's c-ares resolver."""
        return f"dns://127.0.0.1:{self.dns.port}/{NAME}:{self.port}"

    def service_config(self) -> str:
        return SERVICE_CONFIG.read_text()

    def running(self) -> Iterator[Cluster]:
        try:
            for address in ADDRESSES:
                self.start_instance(address)
            self.start_gateway()
            yield self
        finally:
            self.close()

    def start_instance(self, address: str) -> None:
        log = self.workdir / f"server-{address}.log"
        with log.open("a") as output:
            self.instances[address] = launcher.spawn(
                [launcher.console_script("experiments-server")],
                env={**self.env, "EXPERIMENTS_GRPC_HOST": address},
                output=output,
            )
        launcher.wait_for_grpc(address, self.port, self.instances[address], log=log)

    def start_gateway(self) -> None:
        log = self.workdir / "gateway.log"
        env = {
            **self.env,
            "EXPERIMENTS_HTTP_PORT": "0",
            "EXPERIMENTS_UPSTREAMS": f"{NAME}:{self.port}",
            "EXPERIMENTS_UPSTREAMS_RESOLVER": f"127.0.0.1:{self.dns.port}",
        }
        with log.open("a") as output:
            self.gateway = launcher.spawn(
                [launcher.console_script("experiments-gateway")], env=env, output=output
            )
        gateway = self.gateway

        def listening() -> re.Match[str] | None:
            return _LISTENING.search(log.read_text()) if log.exists() else None

        found = launcher.poll(listening, what="experiments-gateway", process=gateway, log=log)
        self.gateway_port = int(found.group(1))
        self.envoy = launcher.Envoy(gateway, found.group(2), self.gateway_port, log)
        self.wait_healthy(len(ADDRESSES))

    def healthy_instances(self) -> int | None:
        """How many instances both of the gateway's clusters take for healthy."""
        return self._membership("healthy")

    def known_instances(self) -> int | None:
        """How many instances both of the gateway's clusters know of (healthy or not)."""
        return self._membership("total")

    def _membership(self, which: str) -> int | None:
        page = self.envoy.admin_get(f"/stats?format=json&filter=membership_{which}$")
        if page is None:
            return None
        values = [int(stat.get("value", 0)) for stat in json.loads(page)["stats"]]
        return min(values) if values else None

    def wait_healthy(self, count: int) -> None:
        assert self.gateway is not None
        launcher.poll(
            lambda: True if self.healthy_instances() == count else None,
            what=f"the gateway to see {count} healthy instances",
            process=self.gateway,
            timeout=60,
        )

    def kill(self, address: str) -> None:
        process = self.instances.pop(address)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def terminate(self, address: str) -> int:
        return launcher.stop(self.instances.pop(address), timeout=60)

    def new_world(self) -> World:
        return new_world(self.database_url)

    def close(self) -> None:
        for process in self.instances.values():
            launcher.stop(process)
        if self.gateway is not None:
            launcher.stop(self.gateway)
        self.dns.close()
