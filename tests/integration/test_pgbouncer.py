"""The service through a real PgBouncer in transaction pooling mode (README, "Connection
budget"): with `?prepare_threshold=none` in EXPERIMENTS_DATABASE_URL every call works, however
the pooler hands server connections around; the pooler is Debian's `pgbouncer`, which `make test`
installs, started here on a free port with a generated configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import text

from gateway import launcher
from server.adapters import schema
from server.adapters.database import engine_url, make_engine
from tests.integration.databases import postgres_server_url
from tests.integration.grpc_client import Client, running_client
from tests.ports import unused_port
from tests.temporary_database import temporary_postgres_database

pytestmark = pytest.mark.postgres

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# Fewer server connections than the service's pools open, so that consecutive statements of a
# client connection land on different server connections.
SERVER_CONNECTIONS = 2
CALLERS = 4
ROUNDS = 15
TIMEOUT = 10.0


def _ini(workdir: Path, database_url: str, port: int) -> Path:
    database = engine_url(database_url)
    ini = workdir / "pgbouncer.ini"
    server = (
        f"host={database.host} port={database.port or 5432} "
        f"dbname={database.database} user={database.username}"
    )
    ini.write_text(
        f"""[databases]
{database.database} = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 500
; the read pool's connections ask for default_transaction_read_only at startup, a session
; setting transaction pooling cannot keep (README, "Behind PgBouncer")
ignore_startup_parameters = options
"""
    )
    return ini


def _accepts(url: str) -> bool | None:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            return True
    except Exception:
        return None
    finally:
        engine.dispose()


@pytest.fixture
def bounced_url(tmp_path: Path) -> Iterator[str]:
    """A migrated database, reached through PgBouncer (transaction pooling), URL without the
    prepare_threshold parameter."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("needs PostgreSQL (EXPERIMENTS_TEST_POSTGRES_URL)")
    if not Path(PGBOUNCER).is_file():
        pytest.fail(
            "pgbouncer is missing: `make test` installs it as root (apt-get install pgbouncer)"
        )
    with temporary_postgres_database(server) as direct:
        schema.upgrade(direct)
        port = unused_port()
        ini = _ini(tmp_path, direct, port)
        log = tmp_path / "pgbouncer.log"
        # PgBouncer refuses to run as root: it then reads its configuration and becomes nobody.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with log.open("w") as output:
            process = subprocess.Popen(
                [PGBOUNCER, *user, str(ini)], stdout=output, stderr=subprocess.STDOUT, text=True
            )
        try:
            url = engine_url(direct).set(port=port).render_as_string(hide_password=False)
            launcher.poll(
                lambda: _accepts(url + "?prepare_threshold=none"),
                what="PgBouncer",
                process=process,
                log=log,
            )
            yield url
        finally:
            launcher.stop(process)


def _work(client: Client, failures: list[str]) -> None:
    """Creates (with a key), reads, lists and updates, each statement many times over: psycopg
    would prepare them after 5 executions."""
    for _ in range(ROUNDS):
        try:
            created = client.stub.CreateExperiment(
                pb.CreateExperimentRequest(
                    organization_id=client.org, experiment=pb.Experiment(is_draft=True, name="b")
                ),
                metadata=(*client.metadata(), ("idempotency-key", str(uuid.uuid4()))),
                timeout=TIMEOUT,
            )
            client.stub.GetExperiment(
                pb.GetExperimentRequest(organization_id=client.org, experiment_id=created.id),
                metadata=client.metadata(),
                timeout=TIMEOUT,
            )
            client.stub.ListExperiments(
                pb.ListExperimentsRequest(organization_id=client.org, page_size=5),
                metadata=client.metadata(),
                timeout=TIMEOUT,
            )
            client.stub.ListExperimentChanges(
                pb.ListExperimentChangesRequest(organization_id=client.org),
                metadata=client.metadata(),
                timeout=TIMEOUT,
            )
        except grpc.RpcError as error:
            failures.append(f"{error.code().name}: {error.details()}")


def test_every_call_works_through_pgbouncer_in_transaction_pooling_mode(
    bounced_url: str,
) -> None:
    failures: list[str] = []
    with running_client(bounced_url + "?prepare_threshold=none") as client:
        callers = [threading.Thread(target=_work, args=(client, failures)) for _ in range(CALLERS)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        listed = client.stub.ListExperiments(
            pb.ListExperimentsRequest(organization_id=client.org, page_size=100),
            metadata=client.metadata(),
            timeout=TIMEOUT,
        )

    assert failures == []
    assert len(listed.results) == CALLERS * ROUNDS
