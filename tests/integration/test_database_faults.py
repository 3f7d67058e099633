"""A database outage is answered UNAVAILABLE (retry), never INTERNAL, and the server recovers
by itself: a real server on port 0 over a throwaway PostgreSQL database. Reads ride over lost
connections (they run once more on a fresh one); writes are not run again. SQLite's one fault
worth a retry, a lock held beyond the busy timeout, is classified from a real lock."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from server.adapters.database import unavailable_cause
from server.domain import messages
from tests.integration.databases import POSTGRESQL, backend_params
from tests.integration.grpc_client import Client, published, running_client
from tests.integration.locks import until
from tests.integration.tcp_proxy import TcpProxy

DEADLINE_SECONDS = 30
CALLS = 20
POOL_WARMERS = 8


@pytest.fixture(params=[p for p in backend_params() if p.values == (POSTGRESQL,)])
def migrated_url(request: pytest.FixtureRequest, migrated_url: str) -> str:
    """PostgreSQL only: the outages below are a database server's."""
    return migrated_url


@pytest.fixture
def proxy(migrated_url: str) -> Iterator[TcpProxy]:
    url = make_url(migrated_url)
    started = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield started
    started.close()


def _calls(client: Client, experiment_id: str) -> list[Callable[[], object]]:
    metadata = client.metadata()
    return [
        lambda: client.stub.GetExperiment(
            pb.GetExperimentRequest(organization_id=client.org, experiment_id=experiment_id),
            metadata=metadata,
            timeout=DEADLINE_SECONDS,
        ),
        lambda: client.stub.ListExperiments(
            pb.ListExperimentsRequest(organization_id=client.org),
            metadata=metadata,
            timeout=DEADLINE_SECONDS,
        ),
        lambda: client.stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=client.org, experiment=published(client.world)
            ),
            metadata=metadata,
            timeout=DEADLINE_SECONDS,
        ),
    ]


def _statuses(client: Client, experiment_id: str, count: int) -> Counter[str]:
    """The status of each of `count` calls (Get, List and Create in turn); checks messages."""
    calls = _calls(client, experiment_id)
    seen: Counter[str] = Counter()
    for n in range(count):
        try:
            calls[n % len(calls)]()
        except grpc.RpcError as error:
            seen[error.code().name] += 1
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                assert error.details() == messages.UNAVAILABLE
        else:
            seen["OK"] += 1
    return seen


def _one_line_each_without_traceback(caplog: pytest.LogCaptureFixture, unavailable: int) -> None:
    records = [r for r in caplog.records if r.name == "experiments.rpc"]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    lines = [r.getMessage() for r in records if "status=UNAVAILABLE" in r.getMessage()]
    assert len(lines) == unavailable
    assert all("database_unavailable=" in line for line in lines), lines


def _recovers(client: Client, experiment_id: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while _statuses(client, experiment_id, 3) != Counter(OK=3):
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.05)  # polling for recovery, not waiting for time to pass


def _first_experiment(client: Client) -> str:
    created = client.stub.CreateExperiment(
        pb.CreateExperimentRequest(organization_id=client.org, experiment=published(client.world)),
        metadata=client.metadata(),
    )
    return str(created.id)


def _terminate_backends(url: str) -> int:
    """Ends every connection to the database from the server side, as a failover does."""
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            terminated: int = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name"
                ),
                {"name": make_url(url).database},
            ).scalar_one()
    finally:
        admin.dispose()
    return terminated


def test_terminated_backends_fail_only_the_first_write_then_recovery(
    migrated_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with running_client(migrated_url) as client:
        experiment_id = _first_experiment(client)
        # Concurrent calls, so that the pools hold several connections to lose.
        with ThreadPoolExecutor(POOL_WARMERS) as warmers:
            warm = list(warmers.map(lambda _: _statuses(client, experiment_id, 3), range(16)))
        assert sum(warm, Counter()) == Counter(OK=48)
        terminated = _terminate_backends(migrated_url)
        assert terminated > 0

        during = _statuses(client, experiment_id, CALLS)

        # Gets and Lists run again on a fresh connection; the first Create finds its write
        # connection lost and is UNAVAILABLE (a write is never run twice by the server), which
        # drops the write pool's other dead connections: every later call is OK.
        assert during == Counter(OK=CALLS - 1, UNAVAILABLE=1), during
        _one_line_each_without_traceback(caplog, during["UNAVAILABLE"])
        _recovers(client, experiment_id)
    with capsys.disabled():
        print(f"\nterminated {terminated} backends; then {CALLS} calls: {dict(during)}")


TERMINATIONS = 3
READERS = 8  # as many as the server's read threads
READS_BETWEEN = 50


def test_reads_under_load_never_fail_across_three_failovers(
    migrated_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_client(migrated_url) as client:
        experiment_id = _first_experiment(client)
        calls = _calls(client, experiment_id)[:2]  # Get and List
        seen: Counter[str] = Counter()
        done_by = [0] * READERS  # calls each reader has finished
        lock = threading.Lock()
        stop = threading.Event()

        def read(n: int) -> None:
            while not stop.is_set():
                try:
                    calls[n % len(calls)]()
                    outcome = "OK"
                except grpc.RpcError as error:
                    outcome = error.code().name
                with lock:
                    seen[outcome] += 1
                    done_by[n] += 1

        def more_reads_done() -> Callable[[], bool]:
            # One failover at a time, as in production: each reader finishes the call it had
            # in flight and one begun after it, so no call spans two failovers (under a loaded
            # CI machine 50 reads took less than one slow call, whose run again on a fresh
            # connection was then ended by the next termination).
            target = seen["OK"] + READS_BETWEEN
            targets = [count + 2 for count in done_by]
            return lambda: (
                seen["OK"] >= target
                and all(done >= goal for done, goal in zip(done_by, targets, strict=True))
            )

        readers = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
        for reader in readers:
            reader.start()
        terminated = []
        try:
            for _ in range(TERMINATIONS):
                until(more_reads_done(), "reads to go on")  # the pool holds live connections
                terminated.append(_terminate_backends(migrated_url))
            until(more_reads_done(), "reads to go on after the last failover")
        finally:
            stop.set()
            for reader in readers:
                reader.join()
    with capsys.disabled():
        print(f"\nterminated {terminated} backends under {READERS} readers: {dict(seen)}")
    assert all(count > 0 for count in terminated)
    assert set(seen) == {"OK"}, seen


def test_refused_connections_give_unavailable_then_ok_without_a_restart(
    migrated_url: str,
    proxy: TcpProxy,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    through_proxy = (
        make_url(migrated_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    with running_client(through_proxy) as client:
        experiment_id = _first_experiment(client)

        proxy.refuse()  # open connections cut, new ones refused
        during = _statuses(client, experiment_id, CALLS)
        proxy.accept()

        assert during == Counter(UNAVAILABLE=CALLS)
        _one_line_each_without_traceback(caplog, CALLS)
        _recovers(client, experiment_id)
    with capsys.disabled():
        print(f"\nconnections refused; {CALLS} calls: {dict(during)}; then OK after reconnecting")


def test_sqlite_locked_beyond_its_timeout_is_a_fault_and_a_missing_table_a_bug(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}", connect_args={"timeout": 0})
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError) as locked:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError) as missing_table:
                other.exec_driver_sql("SELECT * FROM no_such_table")
    finally:
        engine.dispose()

    assert unavailable_cause(locked.value) == "sqlite SQLITE_BUSY"
    assert unavailable_cause(missing_table.value) is None  # stays INTERNAL, with its traceback
