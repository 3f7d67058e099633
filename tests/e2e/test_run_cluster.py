"""`make run-cluster` (gateway/cluster.py) and `experiments-gateway` (gateway/serve.py) as a
reader runs them: each instance's port and PID printed, the gateway serving in front of them,
everything stopped by one SIGTERM; a setting that cannot work is one line saying why."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import launcher
from tests.e2e.rest import HTTP_1_1, RestClient
from tests.e2e.stack import new_world
from tests.integration.databases import postgres_server_url
from tests.ports import alive, unused_port
from tests.temporary_database import temporary_postgres_database

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C stops them all."
GATEWAY_LINE = re.compile(r"experiments-gateway: REST and gRPC on \S+:(\d+),")
INSTANCE_LINE = re.compile(r"instance (\d+): (\S+):(\d+), PID (\d+)")
INSTANCES = 2


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_make_run_cluster_refuses_sqlite_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "EXPERIMENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}

    result = _run([sys.executable, "-m", "gateway.cluster", "--instances", "3"], env)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "SQLite" in result.stderr
    assert "PostgreSQL" in result.stderr


@pytest.mark.parametrize(
    ("upstreams", "named"), [("", "EXPERIMENTS_UPSTREAMS"), ("localhost", "'localhost'")]
)
def test_experiments_gateway_without_usable_upstreams_says_why_in_one_line(
    upstreams: str, named: str
) -> None:
    env = {**os.environ, "EXPERIMENTS_UPSTREAMS": upstreams}

    result = _run([launcher.console_script("experiments-gateway")], env)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = postgres_server_url()
    if server is None:
        pytest.skip("needs PostgreSQL (EXPERIMENTS_TEST_POSTGRES_URL)")
    with temporary_postgres_database(server) as url:
        yield url


def _free_ports(count: int, taken: int) -> int:
    """The first of `count` consecutive ports nothing listens on, none of them `taken`."""
    while True:
        first = unused_port()
        ports = range(first, first + count)
        if taken not in ports and all(_bindable(port) for port in ports):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_run_cluster_prints_each_instance_and_serves_through_the_gateway(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "run-cluster.log"
    http_port = unused_port()
    env = {
        **os.environ,
        "EXPERIMENTS_DATABASE_URL": postgres_url,
        "EXPERIMENTS_GRPC_PORT": str(_free_ports(INSTANCES, http_port)),
        "EXPERIMENTS_HTTP_PORT": str(http_port),
        "EXPERIMENTS_WORKERS": "1",
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            # As `make run-cluster INSTANCES=2` starts it.
            [sys.executable, "-m", "gateway.cluster", "--instances", str(INSTANCES)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        launcher.poll(
            lambda: True if GATEWAY_LINE.search(log.read_text()) else None,
            what="make run-cluster",
            process=process,
            log=log,
        )
        printed = log.read_text()
        instances = INSTANCE_LINE.findall(printed)
        gateway = GATEWAY_LINE.search(printed)
        assert gateway is not None and READY_LINE in printed
        world = new_world(postgres_url)
        rest = RestClient(f"http://127.0.0.1:{gateway.group(1)}", HTTP_1_1)
        listed = launcher.poll(
            lambda: (
                rest.get(world.experiments, token=world.tokens.settings)
                if launcher.grpc_serving(f"127.0.0.1:{env['EXPERIMENTS_GRPC_PORT']}")
                else None
            ),
            what="a list through the gateway",
            process=process,
            log=log,
        )
        pids = [int(pid) for *_, pid in instances]
        assert [int(number) for number, *_ in instances] == list(range(1, INSTANCES + 1))
        assert all(alive(pid) for pid in pids)
        assert listed.status == 200, listed.body

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not any(alive(pid) for pid in pids)
    finally:
        launcher.stop(process)
