"""The change feed's promise, end to end: a consumer that opens a watch, lists the experiments
and follows the watch (through a disconnect and a resume from its cursor) while four clients
write concurrently through separate server processes ends up holding exactly what the
database holds, having seen each change once, in commit order.

Real `experiments-server` processes: on PostgreSQL two instances on one database, on SQLite
one instance with two worker processes (SQLite is one machine's file). No sleeps: writers
run their scripts, the consumer reads until it meets the last write (a sentinel), and
commit order is checked against what the writers themselves observed (a write acknowledged
before another was sent must come first).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import select

from server.adapters.admin import DemoWorld
from server.adapters.database import make_engine
from server.adapters.orm import ExperimentRevisionRecord, ExperimentViewRecord
from server.domain.feed import decode_position
from tests.integration.grpc_client import demo_world, own_connection, published
from tests.integration.locks import DEADLINE_SECONDS

WRITERS = 4
EXPERIMENTS_PER_WRITER = 3
UPDATES_PER_EXPERIMENT = 3
# The consumer drops its watch after this many changes and resumes from its last cursor.
DISCONNECT_AFTER = 12


@dataclass(frozen=True)
class Write:
    """One write as its writer saw it: the change it made (experiment, revision number) and
    when it was sent and acknowledged (this process's monotonic clock)."""

    change: tuple[str, int]
    sent: float
    acknowledged: float


def _write(port: int, world: DemoWorld, writer: int, done: list[Write]) -> None:
    """A writer's script: creates, renames, re-weights and deletes, each acknowledged write
    recorded. Writer 0 also writes in the other organization, which the consumer must not see."""
    channel, stub = own_connection(port)
    ours = (("authorization", f"Token {world.tokens.settings}"),)
    theirs = (("authorization", f"Token {world.tokens.other_organization}"),)
    org = world.organization_id

    def timed(
        call: object, request: object, metadata: object
    ) -> tuple[pb.Experiment, float, float]:
        sent = time.monotonic()
        answer = call(request, metadata=metadata, timeout=DEADLINE_SECONDS)  # type: ignore[operator]
        return answer, sent, time.monotonic()

    try:
        made = []
        for n in range(EXPERIMENTS_PER_WRITER):
            request = pb.CreateExperimentRequest(
                organization_id=org, experiment=published(world, name=f"W{writer} E{n}")
            )
            experiment, sent, acked = timed(stub.CreateExperiment, request, ours)
            done.append(Write((experiment.id, 1), sent, acked))
            made.append(experiment)
            if writer == 0:
                other = pb.CreateExperimentRequest(
                    organization_id=world.other_organization_id,
                    experiment=pb.Experiment(is_draft=True, name=f"Theirs {n}"),
                )
                stub.CreateExperiment(other, metadata=theirs, timeout=DEADLINE_SECONDS)
        for round_ in range(UPDATES_PER_EXPERIMENT):
            for index, experiment in enumerate(made):
                experiment.name = f"W{writer} E{index} v{round_ + 2}"
                experiment.groups[0].percentage = 90 - round_
                experiment.groups[1].percentage = 10 + round_
                update = pb.UpdateExperimentRequest(
                    organization_id=org, experiment_id=experiment.id, experiment=experiment
                )
                updated, sent, acked = timed(stub.UpdateExperiment, update, ours)
                done.append(Write((updated.id, int(updated.etag)), sent, acked))
                made[index] = updated
        gone = made[0]
        delete = pb.DeleteExperimentRequest(organization_id=org, experiment_id=gone.id)
        _, sent, acked = timed(stub.DeleteExperiment, delete, ours)
        done.append(Write((gone.id, int(gone.etag) + 1), sent, acked))
    finally:
        channel.close()


@dataclass
class Consumer:
    """Watch, list, then follow: what it holds, and each change it applied, in order."""

    world: DemoWorld
    ports: list[int]
    held: dict[str, pb.Experiment] = field(default_factory=dict)
    seen: list[tuple[str, int]] = field(default_factory=list)
    start: str = ""
    resumed_at: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Token {self.world.tokens.settings}"),)

    def watch(
        self, port: int, after: str
    ) -> tuple[grpc.Channel, Iterator[pb.WatchExperimentChangesResponse]]:
        channel, stub = own_connection(port)
        request = pb.WatchExperimentChangesRequest(
            organization_id=self.world.organization_id, after=after
        )
        return channel, stub.WatchExperimentChanges(
            request, metadata=self.metadata(), timeout=4 * DEADLINE_SECONDS
        )

    def list_all(self, port: int) -> dict[str, pb.Experiment]:
        channel, stub = own_connection(port)
        listed: dict[str, pb.Experiment] = {}
        cursor = ""
        try:
            while True:
                page = stub.ListExperiments(
                    pb.ListExperimentsRequest(
                        organization_id=self.world.organization_id, page_size=100, cursor=cursor
                    ),
                    metadata=self.metadata(),
                )
                listed.update((e.id, e) for e in page.results)
                if not page.next_cursor:
                    return listed
                cursor = page.next_cursor
        finally:
            channel.close()

    def follow(
        self, stream: Iterator[pb.WatchExperimentChangesResponse], until: str, limit: int
    ) -> str:
        """Applies the watch's changes until `limit` of them or the experiment named `until`
        appears; returns the last cursor received."""
        cursor = ""
        applied = 0
        for message in stream:
            if message.WhichOneof("event") == "heartbeat":
                cursor = message.heartbeat.cursor
                continue
            change = message.change
            cursor = change.cursor
            self.seen.append((change.experiment_id, change.revision))
            if change.action == "deleted":
                self.held.pop(change.experiment_id, None)
            elif (
                change.experiment_id not in self.held
                or int(self.held[change.experiment_id].etag) < change.revision
            ):
                # The list, made after the watch started, may already show a later version.
                self.held[change.experiment_id] = change.experiment
            applied += 1
            if change.experiment.name == until or applied == limit:
                return cursor
        raise AssertionError("the watch ended before the consumer was done")

    def run(self, sentinel: str, ready: threading.Event) -> None:
        channel, stream = self.watch(self.ports[0], "")
        first = next(stream)
        assert first.WhichOneof("event") == "heartbeat", "a watch starts with a heartbeat"
        self.start = first.heartbeat.cursor
        ready.set()  # the writers start now: the list below sees some of their changes
        self.held = self.list_all(self.ports[1])
        cursor = self.follow(stream, sentinel, DISCONNECT_AFTER)
        channel.close()  # the disconnect
        self.resumed_at = cursor
        channel, stream = self.watch(self.ports[-1], cursor)
        try:
            assert next(stream).heartbeat.cursor == cursor, "it resumes where it stopped"
            self.follow(stream, sentinel, limit=-1)
        finally:
            channel.close()


def test_a_consumer_ends_holding_what_the_database_holds_each_change_seen_once_in_order(
    migrated_url: str, server_ports: list[int]
) -> None:
    ports = server_ports
    world = demo_world(migrated_url)
    channel, stub = own_connection(ports[0])
    metadata = (("authorization", f"Token {world.tokens.settings}"),)
    try:
        for n in range(3):  # there before the consumer came
            stub.CreateExperiment(
                pb.CreateExperimentRequest(
                    organization_id=world.organization_id,
                    experiment=published(world, name=f"Before {n}"),
                ),
                metadata=metadata,
            )
        sentinel = f"Sentinel {uuid.uuid4()}"
        consumer = Consumer(world, ports)
        ready = threading.Event()
        problems: list[BaseException] = []

        def consume() -> None:
            try:
                consumer.run(sentinel, ready)
            except BaseException as error:  # reported by the test below
                problems.append(error)
                ready.set()

        consuming = threading.Thread(target=consume)
        consuming.start()
        assert ready.wait(DEADLINE_SECONDS), "the consumer's watch did not start"
        writes: list[Write] = []
        writers = [
            threading.Thread(target=_write, args=(ports[n % len(ports)], world, n, writes))
            for n in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        last = stub.CreateExperiment(
            pb.CreateExperimentRequest(
                organization_id=world.organization_id, experiment=published(world, name=sentinel)
            ),
            metadata=metadata,
        )
        consuming.join(4 * DEADLINE_SECONDS)
        assert not problems, problems
        assert not consuming.is_alive(), "the consumer never met the last write"
    finally:
        channel.close()

    # What the database holds: the organization's revisions after the consumer's start, in
    # feed order, and its experiments as reads show them.
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            committed = [
                (str(row.experiment_id), row.revision)
                for row in connection.execute(
                    select(
                        ExperimentRevisionRecord.experiment_id, ExperimentRevisionRecord.revision
                    )
                    .where(
                        ExperimentRevisionRecord.organization_id
                        == uuid.UUID(world.organization_id),
                        ExperimentRevisionRecord.seq > decode_position(consumer.start),
                    )
                    .order_by(ExperimentRevisionRecord.seq)
                )
            ]
            stored = {
                str(row.experiment_id): pb.Experiment.FromString(row.message)
                for row in connection.execute(
                    select(ExperimentViewRecord.experiment_id, ExperimentViewRecord.message).where(
                        ExperimentViewRecord.organization_id == uuid.UUID(world.organization_id)
                    )
                )
            }
    finally:
        engine.dispose()

    expected_writes = WRITERS * (EXPERIMENTS_PER_WRITER * (1 + UPDATES_PER_EXPERIMENT) + 1)
    assert len(writes) == expected_writes
    # Each change once, and every committed change: exactly the database's, in its order.
    assert len(set(consumer.seen)) == len(consumer.seen)
    assert consumer.seen == committed
    assert consumer.seen[-1] == (last.id, 1)
    assert len(consumer.seen) > DISCONNECT_AFTER, "the disconnect happened mid-way"
    # Commit order as the writers saw it: a write acknowledged before another was sent comes
    # first in the feed (and so does each experiment's revision before its next).
    position = {change: index for index, change in enumerate(consumer.seen)}
    for earlier in writes:
        for later in writes:
            if earlier.acknowledged < later.sent:
                assert position[earlier.change] < position[later.change], (earlier, later)
    # It holds what the database holds.
    assert consumer.held == stored
