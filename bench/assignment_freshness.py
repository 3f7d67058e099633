"""Assignment freshness: how long after a write's acknowledgement every worker's AssignVisitor
shows it, and whether the worker that made it shows it at once.

    .venv/bin/python -m bench.assignment_freshness [--writes 50] [--rate 5] [--observers 4]
                                                   [--database-url URL]

Seeds a fresh database (bench/seed.py, 1,000 experiments; SQLite in a temporary folder, or a
fresh database on the PostgreSQL server of --database-url) and starts experiments-server: on
PostgreSQL two instances of one worker each, on SQLite one instance of two workers (SQLite is
one machine's file). Observer processes, spread over the instances (each on a connection of
its own, which the kernel hands to either worker of an instance), ask AssignVisitor for one
visitor in a tight loop. The writer renames the groups of one of the assigning
organization's experiments `--writes` times at `--rate` per second through the first
instance (group names carry the write's number, which every assignment names), and after
each acknowledgement asks its own connection once: that answer must show the write (the
worker that made it shows it at once). The lag of a write at an observer is the time from
its acknowledgement to the observer's first answer showing it (or a later write), both on
CLOCK_MONOTONIC, which the machine's processes share; an observer's own call (a few ms)
is in it, so the figures are an upper bound. Prints p50/p90/p99/max; the promise (README,
"Visitor assignment: the call") is p99 within 1 s.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc

from bench import seed, stack
from bench.run import prepare

EXPERIMENTS = 1_000
VISITOR = "freshness-visitor"
PROMISED_P99_SECONDS = 1.0
TIMEOUT = 30.0


def _stub(port: int) -> tuple[grpc.Channel, experiments_pb2_grpc.ExperimentServiceStub]:
    # A connection of its own: with several workers on a port, the kernel picks one for it.
    channel = grpc.insecure_channel(
        f"{stack.HOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )
    return channel, experiments_pb2_grpc.ExperimentServiceStub(channel)


def _shown(answer: pb.AssignVisitorResponse, experiment_id: str) -> int:
    """The write number the experiment's assignment shows (its group is named like A12; 0
    before the first write)."""
    for assignment in answer.assignments:
        if assignment.experiment_id == experiment_id:
            number = assignment.group_name[1:]
            return int(number) if number.isdigit() else 0
    return -1


def _observe(
    port: int, request: bytes, key: str, experiment_id: str, writes: int, results: Connection
) -> None:
    """An observer process: asks until it has seen the last write; sends, per write number,
    when it first saw it (or a later one)."""
    channel, stub = _stub(port)
    parsed = pb.AssignVisitorRequest.FromString(request)
    metadata = (("authorization", f"Token {key}"),)
    seen: dict[int, float] = {}
    latest = 0
    deadline = time.monotonic() + TIMEOUT + writes
    results.send("ready")
    while latest < writes and time.monotonic() < deadline:
        shown = _shown(
            stub.AssignVisitor(parsed, metadata=metadata, timeout=TIMEOUT), experiment_id
        )
        now = time.monotonic()
        for number in range(latest + 1, shown + 1):
            seen[number] = now
        latest = max(latest, shown)
    channel.close()
    results.send(seen)


def measure(options: argparse.Namespace, workdir: Path) -> list[str]:
    with stack.fresh_database(options.database_url, workdir, "db", False) as database:
        world = prepare(database, EXPERIMENTS)
        postgres = database.startswith("postgresql")
        servers = [
            stack.start_server(database, 1 if postgres else 2, workdir, f"server{n}")
            for n in range(2 if postgres else 1)
        ]
        try:
            return _run(options, world, [server.port for server in servers])
        finally:
            for server in servers:
                server.stop()


def _run(options: argparse.Namespace, world: seed.World, ports: list[int]) -> list[str]:
    key = world.assigning_api_key
    metadata = (("authorization", f"Token {key}"),)
    request = pb.AssignVisitorRequest(
        organization_id=str(world.assigning_organization_id),
        visitor_id=VISITOR,
        room_id=str(world.assigning_room_id),
    )
    writer_channel, writer = _stub(ports[0])
    # The experiment written: the first one assigning the visitor, as the writer's worker sees.
    experiment_id = writer.AssignVisitor(request, metadata=metadata).assignments[0].experiment_id
    experiment = writer.GetExperiment(
        pb.GetExperimentRequest(
            organization_id=request.organization_id, experiment_id=experiment_id
        ),
        metadata=metadata,
    )
    context = multiprocessing.get_context("spawn")
    observers = []
    for n in range(options.observers):
        mine, theirs = context.Pipe()
        process = context.Process(
            target=_observe,
            args=(
                ports[n % len(ports)],
                request.SerializeToString(),
                key,
                experiment_id,
                options.writes,
                theirs,
            ),
        )
        process.start()
        observers.append((process, mine))
    for _, pipe in observers:
        assert pipe.recv() == "ready"
    acknowledged: dict[int, float] = {}
    not_at_once = 0
    for number in range(1, options.writes + 1):
        due = time.monotonic() + 1 / options.rate
        for index, group in enumerate(experiment.groups):
            group.name = f"{'AB'[index % 2]}{number}"
        experiment = writer.UpdateExperiment(
            pb.UpdateExperimentRequest(
                organization_id=request.organization_id,
                experiment_id=experiment_id,
                experiment=experiment,
            ),
            metadata=metadata,
        )
        acknowledged[number] = time.monotonic()
        if _shown(writer.AssignVisitor(request, metadata=metadata), experiment_id) != number:
            not_at_once += 1
        time.sleep(max(0.0, due - time.monotonic()))  # the write rate, not a synchronisation
    writer_channel.close()
    lags, missing = [], 0
    for process, pipe in observers:
        seen: dict[int, float] = pipe.recv()
        process.join()
        for number, at in acknowledged.items():
            if number in seen:
                lags.append((seen[number] - at) * 1000)
            else:
                missing += 1
    lags.sort()
    where = "2 instances of 1 worker (PostgreSQL)" if len(ports) > 1 else "1 instance of 2 workers"
    return [
        f"Assignment freshness: {options.writes} writes at {options.rate:g}/s, "
        f"{options.observers} observers over {where}",
        f"  lag from acknowledgement to an observer's answer: p50 {_pct(lags, 0.5):.0f} ms, "
        f"p90 {_pct(lags, 0.9):.0f} ms, p99 {_pct(lags, 0.99):.0f} ms, max {lags[-1]:.0f} ms "
        f"({len(lags)} samples, {missing} never seen)",
        f"  the writer's own worker showed {options.writes - not_at_once} of {options.writes} "
        "writes in its first answer after the acknowledgement",
        f"  {'PASS' if _pct(lags, 0.99) <= PROMISED_P99_SECONDS * 1000 and not missing else 'FAIL'}"
        f"  lag p99 <= {PROMISED_P99_SECONDS:g} s",
        f"  {'PASS' if not not_at_once else 'FAIL'}  the writing worker shows its write at once",
    ]


def _pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="writes per second")
    parser.add_argument("--observers", type=int, default=4, help="observer processes")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server's URL")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        lines = measure(options, Path(folder))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
