"""Several instances on one PostgreSQL behind experiments-gateway (issue 17): no failed read when
one dies or is stopped, every keyed create written exactly once, every watcher resumed with
nothing missed; over REST and native gRPC through the gateway, and directly with grpcio and the
documented service config (clients/grpc-service-config.json).

The calls and failures of each phase are printed at the end of the run ("cluster phases").
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from gateway import launcher
from server.adapters.admin import revoke_api_key
from server.adapters.database import make_engine
from server.adapters.orm import ExperimentRecord
from tests.e2e.cluster import ADDRESSES, Cluster
from tests.e2e.payloads import upcoming
from tests.e2e.phases import PhaseTally
from tests.e2e.rest import HTTP_1_1, RestClient
from tests.e2e.stack import World
from tests.integration.databases import postgres_server_url
from tests.integration.locks import until
from tests.temporary_database import temporary_postgres_database

pytestmark = pytest.mark.postgres

TIMEOUT = 10.0
# Calls each loader makes in a phase before the next step: enough to overlap the step.
CALLS_PER_PHASE = 20
# How long a writer keeps retrying one create (with its key) before it counts it as lost.
WRITE_DEADLINE_SECONDS = 60.0
# Between two tries of a failed create or watch: a client's backoff, not synchronisation.
CLIENT_BACKOFF_SECONDS = 0.05
KILLED, STOPPED = ADDRESSES[1], ADDRESSES[2]
# EXPERIMENTS_AUTH_CACHE_SECONDS of the revocation test: short, so that it waits little.
AUTH_CACHE_SECONDS = 2.0


def _running_cluster(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    server = postgres_server_url()
    if server is None:
        pytest.skip("needs PostgreSQL (EXPERIMENTS_TEST_POSTGRES_URL)")
    with temporary_postgres_database(server) as url:
        yield from Cluster(workdir, url, env=env).running()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _running_cluster(tmp_path)


def _metadata(world: World, **extra: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Token {world.tokens.settings}"), *extra.items())


class Load:
    """Readers, writers and watchers over the three ways in, each a thread, until stopped."""

    def __init__(self, cluster: Cluster, world: World, experiment_id: str, tally: PhaseTally):
        self.cluster, self.world, self.experiment_id, self.tally = (
            cluster,
            world,
            experiment_id,
            tally,
        )
        self.stopping = threading.Event()
        self.channels = {
            "gateway gRPC": grpc.insecure_channel(cluster.gateway_target),
            "direct gRPC": grpc.insecure_channel(
                cluster.direct_target, options=[("grpc.service_config", cluster.service_config())]
            ),
        }
        self.rest = RestClient(cluster.base_url, HTTP_1_1)
        self.created: dict[str, list[str]] = {}  # client -> experiment ids
        self.lost: list[str] = []
        self.watched: dict[str, list[tuple[str, int]]] = {}  # watcher -> (experiment, revision)
        self.watch_ready: dict[str, threading.Event] = {}
        self.watch_calls: dict[str, grpc.Call] = {}
        self.threads: list[threading.Thread] = []
        self.watchers: list[threading.Thread] = []

    # -- readers: a failure is any answer other than the experiment or its list page.

    def _rest_read(self, n: int) -> str | None:
        path = self.world.experiments + (f"/{self.experiment_id}" if n % 2 else "?page_size=5")
        try:
            response = self.rest.get(path, token=self.world.tokens.settings)
        except OSError as error:
            return type(error).__name__
        return None if response.status == 200 else f"HTTP {response.status} {response.body[:80]!r}"

    def _grpc_read(self, channel: grpc.Channel) -> Callable[[int], str | None]:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        organization = self.world.organization_id

        def read(n: int) -> str | None:
            try:
                if n % 2:
                    stub.GetExperiment(
                        pb.GetExperimentRequest(
                            organization_id=organization, experiment_id=self.experiment_id
                        ),
                        metadata=_metadata(self.world),
                        timeout=TIMEOUT,
                    )
                else:
                    stub.ListExperiments(
                        pb.ListExperimentsRequest(organization_id=organization, page_size=5),
                        metadata=_metadata(self.world),
                        timeout=TIMEOUT,
                    )
            except grpc.RpcError as error:
                return f"{error.code().name} {error.details()}"
            return None

        return read

    # -- writers: each create carries a key of its own and is tried again with it until it
    # succeeds; the failed tries are counted, and whether each is written once is checked.

    def _rest_create(self, name: str, key: str) -> tuple[str | None, str | None]:
        try:
            response = self.rest.post(
                self.world.experiments,
                token=self.world.tokens.settings,
                json_body=upcoming(self.world, name=name),
                headers={"Idempotency-Key": key},
            )
        except OSError as error:
            return None, type(error).__name__
        if response.status != 201:
            return None, f"HTTP {response.status}"
        return str(response.json()["id"]), None

    def _grpc_create(
        self, channel: grpc.Channel
    ) -> Callable[[str, str], tuple[str | None, str | None]]:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)

        def create(name: str, key: str) -> tuple[str | None, str | None]:
            try:
                created = stub.CreateExperiment(
                    pb.CreateExperimentRequest(
                        organization_id=self.world.organization_id,
                        experiment=pb.Experiment(is_draft=True, name=name),
                    ),
                    metadata=_metadata(self.world, **{"idempotency-key": key}),
                    timeout=TIMEOUT,
                )
            except grpc.RpcError as error:
                return None, error.code().name
            return created.id, None

        return create

    def _writer(
        self, client: str, create: Callable[[str, str], tuple[str | None, str | None]]
    ) -> None:
        ids = self.created.setdefault(client, [])
        n = 0
        while not self.stopping.is_set():
            n += 1
            name, key = f"cluster {client} {n}", str(uuid.uuid4())
            deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
            while True:
                phase = self.tally.phase
                created, failure = create(name, key)
                self.tally.record(f"write, {client}", phase, failure)
                if created is not None:
                    ids.append(created)
                    break
                if time.monotonic() > deadline:
                    self.lost.append(name)
                    break
                time.sleep(CLIENT_BACKOFF_SECONDS)

    def _reader(self, client: str, read: Callable[[int], str | None]) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            phase = self.tally.phase
            self.tally.record(f"read, {client}", phase, read(n))

    # -- watchers: from the first heartbeat's cursor; on any failure, again from the last
    # cursor, as a client should. UNAVAILABLE is what a stopping instance ends a watch with.

    def _watcher(self, client: str, channel: grpc.Channel) -> None:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        seen = self.watched.setdefault(client, [])
        ready = self.watch_ready.setdefault(client, threading.Event())
        cursor = ""
        while True:
            call = stub.WatchExperimentChanges(
                pb.WatchExperimentChangesRequest(
                    organization_id=self.world.organization_id, after=cursor
                ),
                metadata=_metadata(self.world),
            )
            self.watch_calls[client] = call
            try:
                for message in call:
                    if message.HasField("change"):
                        seen.append((message.change.experiment_id, message.change.revision))
                        cursor = message.change.cursor
                    else:
                        cursor = message.heartbeat.cursor
                        ready.set()
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED and self.stopping.is_set():
                    self.tally.record(f"watch, {client}", self.tally.phase, None)
                    return
                # The phase the watch ended in (it may have started in an earlier one).
                self.tally.record(f"watch, {client}", self.tally.phase, error.code().name)
                time.sleep(CLIENT_BACKOFF_SECONDS)
                continue
            self.tally.record(f"watch, {client}", self.tally.phase, "ended without a status")

    def start(self) -> None:
        def spawn(target: Callable[..., None], *args: object) -> None:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)

        for client, channel in self.channels.items():
            spawn(self._watcher, client, channel)
        self.watchers = list(self.threads)
        for client in self.channels:
            until(self.watch_ready[client].is_set, f"the {client} watch to start")
        spawn(self._reader, "REST", self._rest_read)
        for client, channel in self.channels.items():
            spawn(self._reader, client, self._grpc_read(channel))
        spawn(self._writer, "REST", self._rest_create)
        for client, channel in self.channels.items():
            spawn(self._writer, client, self._grpc_create(channel))

    @property
    def loaders(self) -> list[str]:
        return [f"{kind}, {client}" for kind in ("read", "write") for client in self.clients]

    @property
    def clients(self) -> list[str]:
        return ["REST", *self.channels]

    def progressed(self, phase: str) -> bool:
        return all(self.tally.count(loader, phase) >= CALLS_PER_PHASE for loader in self.loaders)

    def stop(self) -> None:
        """Stops the readers and writers, then the watchers once they saw every create."""
        self.stopping.set()
        for thread in self.threads:
            if thread not in self.watchers:
                thread.join(timeout=2 * TIMEOUT + WRITE_DEADLINE_SECONDS)
        created = {i for ids in self.created.values() for i in ids}
        try:
            for client, seen in self.watched.items():
                until(functools.partial(_saw_all, created, seen), f"the {client} watch to see all")
        finally:
            for call in self.watch_calls.values():
                call.cancel()
            for thread in self.watchers:
                thread.join(timeout=TIMEOUT)
            self.rest.close()
            for channel in self.channels.values():
                channel.close()


def _saw_all(created: set[str], seen: list[tuple[str, int]]) -> bool:
    return created <= {experiment for experiment, _ in list(seen)}


def test_reads_survive_a_killed_and_a_stopped_instance(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    world = cluster.new_world()
    seeded = RestClient(cluster.base_url, HTTP_1_1).post(
        world.experiments, token=world.tokens.settings, json_body=upcoming(world)
    )
    assert seeded.status == 201, seeded.body
    tally = PhaseTally("1. all up")
    load = Load(cluster, world, seeded.json()["id"], tally)
    try:
        load.start()
        until(lambda: load.progressed("1. all up"), "load on three instances")

        tally.phase = "2. one killed (SIGKILL)"
        cluster.kill(KILLED)
        cluster.wait_healthy(len(ADDRESSES) - 1)
        until(lambda: load.progressed("2. one killed (SIGKILL)"), "load without one instance")
        cluster.start_instance(KILLED)
        cluster.wait_healthy(len(ADDRESSES))

        tally.phase = "3. one stopped (SIGTERM, drains)"
        assert cluster.terminate(STOPPED) == 0, "the instance did not drain and stop cleanly"
        until(lambda: load.progressed("3. one stopped (SIGTERM, drains)"), "load after a stop")
        cluster.start_instance(STOPPED)
        cluster.wait_healthy(len(ADDRESSES))

        tally.phase = "4. all up again"
        until(lambda: load.progressed("4. all up again"), "load on three instances again")
    finally:
        load.stop()
        request.node.user_properties.append(tally.as_property("gateway and direct clients"))

    assert tally.failed_of("read") == []
    assert load.lost == []
    # Each keyed create exactly once, though a try may have been retried by the gateway, the
    # grpcio channel or the client.
    names = _experiment_names(cluster.database_url)
    tried = {
        f"cluster {client} {n + 1}" for client, ids in load.created.items() for n in range(len(ids))
    }
    assert {name for name, count in names.items() if count != 1} == set()
    assert tried <= set(names)
    created = {i for ids in load.created.values() for i in ids}
    for client, seen in load.watched.items():
        missed = created - {experiment for experiment, _ in seen}
        who = {c: [i for i in ids if i in missed] for c, ids in load.created.items()}
        assert not missed, f"{client} missed {who} {tally.failures} {len(seen)}"
        assert len(seen) == len(set(seen)), f"{client} got a change twice"
    # A stopping instance ends its watches with UNAVAILABLE, never another status.
    stop_codes = {
        failure.rsplit(": ", 1)[1]
        for failure in tally.failed_of("watch")
        if failure.startswith("3.")
    }
    assert stop_codes <= {"UNAVAILABLE"}


def _experiment_names(database_url: str) -> Counter[str]:
    """How many experiments the database holds of each name the writers gave."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(ExperimentRecord.name, func.count())
                .where(ExperimentRecord.name.startswith("cluster "))
                .group_by(ExperimentRecord.name)
            )
            return Counter({str(name): int(count) for name, count in rows})
    finally:
        engine.dispose()


def _instance_stub(cluster: Cluster, address: str) -> experiments_pb2_grpc.ExperimentServiceStub:
    channel = grpc.insecure_channel(f"{address}:{cluster.port}")
    return experiments_pb2_grpc.ExperimentServiceStub(channel)


def _health(cluster: Cluster, address: str) -> int | None:
    with grpc.insecure_channel(f"{address}:{cluster.port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT
            )
        except grpc.RpcError:
            return None
    return int(reply.status)


def test_a_stopping_instance_serves_as_not_serving_until_the_gateway_has_noticed(
    cluster: Cluster,
) -> None:
    world = cluster.new_world()
    stub = _instance_stub(cluster, STOPPED)
    request = pb.ListExperimentsRequest(organization_id=world.organization_id)
    stopping = cluster.instances.pop(STOPPED)

    stopping.terminate()
    until(
        lambda: _health(cluster, STOPPED) == health_pb2.HealthCheckResponse.NOT_SERVING,
        "the instance to report NOT_SERVING",
    )
    cluster.wait_healthy(len(ADDRESSES) - 1)
    # The gateway has taken it out, and it still answers the calls that were on their way.
    answered = stub.ListExperiments(request, metadata=_metadata(world), timeout=TIMEOUT)
    assert stopping.poll() is None
    assert stopping.wait(timeout=60) == 0

    assert list(answered.results) == []


@pytest.fixture
def short_cache_cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _running_cluster(
        tmp_path, {"EXPERIMENTS_AUTH_CACHE_SECONDS": f"{AUTH_CACHE_SECONDS:g}"}
    )


def test_a_revoked_key_is_refused_by_every_instance_within_the_key_cache_bound(
    short_cache_cluster: Cluster,
) -> None:
    cluster = short_cache_cluster
    world = cluster.new_world()
    stubs = {address: _instance_stub(cluster, address) for address in ADDRESSES}
    request = pb.ListExperimentsRequest(organization_id=world.organization_id)
    # Every instance has the key in its cache.
    for stub in stubs.values():
        stub.ListExperiments(request, metadata=_metadata(world), timeout=TIMEOUT)

    engine = make_engine(cluster.database_url)
    with engine.begin() as connection:
        revoke_api_key(connection, world.tokens.settings)
    engine.dispose()
    revoked_at = time.monotonic()

    # Each instance is asked until it refuses; every answer given after the bound must be a
    # refusal.
    answers_after_bound: list[str] = []
    refused: set[str] = set()

    def ask_all() -> bool:
        for address, stub in stubs.items():
            asked_at = time.monotonic()
            try:
                stub.ListExperiments(request, metadata=_metadata(world), timeout=TIMEOUT)
                answer = "OK"
            except grpc.RpcError as error:
                answer = error.code().name
            if answer == "UNAUTHENTICATED":
                refused.add(address)
            if asked_at - revoked_at > AUTH_CACHE_SECONDS:
                answers_after_bound.append(f"{address}: {answer}")
        return refused == set(ADDRESSES)

    until(ask_all, "every instance to refuse the revoked key")

    assert [a for a in answers_after_bound if not a.endswith("UNAUTHENTICATED")] == []


def test_the_gateway_follows_the_addresses_of_the_instances_name(cluster: Cluster) -> None:
    assert cluster.gateway is not None
    gateway = cluster.gateway
    cluster.dns.answer_with(ADDRESSES[:2])
    launcher.poll(
        lambda: True if cluster.known_instances() == 2 else None,
        what="the gateway to drop the address the name lost",
        process=gateway,
    )

    cluster.dns.answer_with(ADDRESSES)
    cluster.wait_healthy(len(ADDRESSES))
