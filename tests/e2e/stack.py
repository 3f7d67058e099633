"""The real stack of the end-to-end tests: a migrated database (SQLite or PostgreSQL),
`experiments-server` and Envoy on free ports, and the demo worlds `experiments-admin demo`
creates in it.

The schema and the demo worlds are made in this process, by the functions `experiments-admin
migrate` and `demo` call: each command costs a second of CPU to start, and the tests need
dozens of worlds. The commands themselves are tested in tests/integration/test_admin.py and
through `make run` (tests/e2e/test_make_run.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import launcher
from server.adapters import schema
from server.adapters.admin import DemoWorld, create_demo_world
from server.adapters.database import make_engine
from tests.ports import unused_port


@dataclass(frozen=True)
class World(DemoWorld):
    """What `experiments-admin demo` printed, with the REST path the e2e tests start from."""

    @property
    def experiments(self) -> str:
        """The path of this world's organization's experiments."""
        return f"/api/v5/orgs/{self.organization_id}/experiments"


class Stack:
    """A migrated database (an SQLite file by default), the gRPC server and Envoy in front."""

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        *,
        cors_origins: Sequence[str] = (),
        rest_deadline_seconds: float = launcher.REST_DEADLINE_SECONDS,
        connection_limits: launcher.ConnectionLimits = launcher.DEFAULT_CONNECTION_LIMITS,
    ) -> None:
        self.workdir = workdir
        self.rest_deadline_seconds = rest_deadline_seconds
        self.connection_limits = connection_limits
        # Envoy's upstream; Envoy starts first, since its port is the server's public URL.
        self.grpc_port = unused_port()
        self.cors_origins = tuple(cors_origins)
        # SQLite in the work folder unless told otherwise.
        self.database_url = database_url or f"sqlite:///{workdir / 'experiments.sqlite3'}"
        self.env = {
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": self.database_url,
            "EXPERIMENTS_GRPC_HOST": "127.0.0.1",
            "EXPERIMENTS_GRPC_PORT": str(self.grpc_port),
            "EXPERIMENTS_WORKERS": "1",
        }
        self.server: subprocess.Popen[str] | None = None
        self.envoy: launcher.Envoy | None = None
        schema.upgrade(self.database_url)

    @property
    def base_url(self) -> str:
        assert self.envoy is not None
        return f"http://127.0.0.1:{self.envoy.http_port}"

    @property
    def envoy_log(self) -> Path:
        return self.workdir / "envoy.log"

    def running(self) -> Iterator[Stack]:
        """Starts the stack, yields it and stops it: a fixture's body for a stack of its own."""
        try:
            self.start()
            yield self
        finally:
            self.close()

    def start(self) -> None:
        # Envoy first: its port (chosen by the kernel) is the public URL the server links to.
        config = launcher.render_config(
            http_host="127.0.0.1",
            http_port=0,
            grpc_host="127.0.0.1",
            grpc_port=self.grpc_port,
            cors_origins=self.cors_origins,
            rest_deadline_seconds=self.rest_deadline_seconds,
            connection_limits=self.connection_limits,
        )
        with self.envoy_log.open("a") as output:
            self.envoy = launcher.start_envoy(
                config, self.workdir, output=output, log=self.envoy_log, concurrency=1
            )
        self.env["EXPERIMENTS_PUBLIC_BASE_URL"] = self.base_url
        self.start_server()
        self.envoy.wait_upstream_healthy()

    def start_server(self) -> None:
        log = self.workdir / "server.log"
        with log.open("a") as output:
            self.server = launcher.spawn(
                [launcher.console_script("experiments-server")], env=self.env, output=output
            )
        launcher.wait_for_grpc("127.0.0.1", self.grpc_port, self.server, log=log)

    def stop_server(self) -> None:
        assert self.server is not None
        assert launcher.stop(self.server) == 0, "the server did not stop cleanly on SIGTERM"
        self.server = None

    def close(self) -> None:
        if self.server is not None:
            launcher.stop(self.server)
        if self.envoy is not None:
            self.envoy.stop()

    def new_world(self) -> World:
        return new_world(self.database_url)


def new_world(database_url: str) -> World:
    """A fresh demo world, as `experiments-admin demo` makes it."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            return World.from_json(create_demo_world(connection).to_json())
    finally:
        engine.dispose()
