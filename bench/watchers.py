"""Watch capacity: unary throughput with and without many open watches, and the lag from a
write's acknowledgement to its event at every watcher.

    .venv/bin/python -m bench.watchers [--watchers 1000] [--writes 50] [--rate 10] ...

Seeds a fresh database (SQLite in a temporary folder, or --database-url), starts
experiments-server with its worker processes, and then:

1. measures GetExperiment with h2load (the bench's gRPC Get phase) with no watch open;
2. opens the watches from client processes (grpc.aio, several connections each, so that the
   kernel spreads them over the workers), waits for every first heartbeat, and measures
   the same Get phase again while they stay open (idle but for heartbeats);
3. updates one experiment of the watched organization `--writes` times at `--rate` per
   second, and records, for every watcher and every write, the time from the Update's
   answer (the acknowledgement) to the event's arrival (both on CLOCK_MONOTONIC, which
   every process of the machine shares). A watcher's arrival time includes its client
   process's own queueing: the figures are an upper bound.

Prints the figures and the targets of issue 15 (lag p99 <= 1 s; Get with the watches open
>= 90% of without). `fan_out` is the whole measurement on a running server: `make bench` runs it
as its watch phase (bench/run.py); this module runs it once, on a server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from experiments.v5 import experiments_pb2 as pb
from experiments.v5 import experiments_pb2_grpc

from bench import phases, procstats, seed, stack

# Connections per client process: SO_REUSEPORT spreads connections (not streams) over the
# workers, so each client opens several.
CONNECTIONS_PER_CLIENT = 10
READY_TIMEOUT = 120.0
DELIVERY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Lag:
    samples_ms: list[float]
    missing: int  # (watcher, write) pairs never delivered within DELIVERY_TIMEOUT
    duplicates: int

    def percentile(self, q: float) -> float:
        if not self.samples_ms:
            return math.nan
        return self.samples_ms[max(1, math.ceil(q * len(self.samples_ms))) - 1]


# --- the client processes that hold the watches ---------------------------------------------


async def _hold_watches(port: int, organization: str, key: str, count: int) -> None:
    """One client process: `count` watches over CONNECTIONS_PER_CLIENT connections. Prints
    `ready` once each has its first heartbeat; on `report` from stdin, prints the arrival
    times of each change (by `experiment_id:revision`) as JSON; on `stop`, exits."""
    channels = [
        grpc.aio.insecure_channel(
            f"{stack.HOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CONNECTIONS_PER_CLIENT)
    ]
    arrivals: dict[str, list[float]] = defaultdict(list)
    started = 0
    all_started = asyncio.Event()
    request = pb.WatchExperimentChangesRequest(organization_id=organization)
    metadata = (("authorization", f"Token {key}"),)

    async def watch(channel: grpc.aio.Channel) -> None:
        nonlocal started
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        first = True
        async for message in stub.WatchExperimentChanges(request, metadata=metadata):
            if message.WhichOneof("event") == "change":
                change = message.change
                arrivals[f"{change.experiment_id}:{change.revision}"].append(time.monotonic())
            elif first:
                first = False
                started += 1
                if started == count:
                    all_started.set()

    tasks = [asyncio.create_task(watch(channels[n % len(channels)])) for n in range(count)]
    await all_started.wait()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "report":
            print(json.dumps(arrivals), flush=True)
        elif line in ("stop", ""):
            break
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close()


class _Client:
    """A client process holding watches (this module run with --client)."""

    def __init__(self, port: int, world: seed.World, count: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.watchers",
                "--client",
                f"{port},{world.organization_id},{world.api_key},{count}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a watch client did not start its watches: {line!r}")

    def report(self) -> dict[str, list[float]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        report: dict[str, list[float]] = json.loads(self.process.stdout.readline())
        return report

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.write("stop\n")
            self.process.stdin.close()
        self.process.wait(timeout=30)


@contextmanager
def open_watchers(
    port: int, world: seed.World, watchers: int, clients: int
) -> Iterator[list[_Client]]:
    """`watchers` watches of the world's organization, spread over `clients` processes, each
    past its first heartbeat."""
    share = [watchers // clients + (1 if n < watchers % clients else 0) for n in range(clients)]
    started = [_Client(port, world, count) for count in share if count]
    try:
        for client in started:
            client.wait_ready()
        yield started
    finally:
        for client in started:
            client.stop()


# --- the lag ------------------------------------------------------------------------------


def lag_phase(
    port: int, world: seed.World, clients: list[_Client], watchers: int, writes: int, rate: float
) -> Lag:
    """`writes` updates of one experiment at `rate` per second; the lag of each at each
    watcher, from the Update's answer to the event's arrival."""
    acknowledged: dict[str, float] = {}
    experiment_id = str(world.update_experiment_id)
    metadata = (("authorization", f"Token {world.api_key}"),)
    with grpc.insecure_channel(f"{stack.HOST}:{port}") as channel:
        stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        current = stub.GetExperiment(
            pb.GetExperimentRequest(
                organization_id=str(world.organization_id), experiment_id=experiment_id
            ),
            metadata=metadata,
        )
        for n in range(writes):
            due = time.monotonic() + 1 / rate
            current.name = f"Watched {n}"
            current = stub.UpdateExperiment(
                pb.UpdateExperimentRequest(
                    organization_id=str(world.organization_id),
                    experiment_id=experiment_id,
                    experiment=current,
                ),
                metadata=metadata,
            )
            acknowledged[f"{experiment_id}:{current.etag}"] = time.monotonic()
            time.sleep(max(0.0, due - time.monotonic()))  # pacing the load, not synchronising
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    last = f"{experiment_id}:{current.etag}"
    while True:
        reports = [client.report() for client in clients]
        delivered = sum(len(report.get(last, ())) for report in reports)
        if delivered >= watchers or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # polling the clients' reports until the last write is everywhere
    samples: list[float] = []
    missing = duplicates = 0
    for key, acked in acknowledged.items():
        arrivals = [moment for report in reports for moment in report.get(key, ())]
        samples += [(moment - acked) * 1000 for moment in arrivals]
        missing += max(0, watchers - len(arrivals))
        duplicates += max(0, len(arrivals) - watchers)
    return Lag(sorted(samples), missing, duplicates)


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How much of each: the watches, the writes whose lag is measured, the Get phases."""

    watchers: int = 1000
    clients: int = 2  # client processes holding the watches
    writes: int = 50
    rate: float = 10.0  # writes per second
    duration: float = 10.0  # measured seconds per Get phase
    warmup: float = 2.0


@dataclass
class Figures:
    plan: Plan
    workers: int
    without: phases.Measurement  # Get with no watch open
    with_watches: phases.Measurement  # Get with every watch open
    lag: Lag
    server_cpu_seconds: float  # during the lag phase
    client_cpu_seconds: float
    rss_mb: list[float]

    @property
    def ratio(self) -> float:
        return self.with_watches.rps / self.without.rps if self.without.rps else math.nan

    @property
    def lag_met(self) -> bool:
        lag = self.lag
        return lag.percentile(0.99) <= LAG_P99_MS and not lag.missing and not lag.duplicates

    def lines(self) -> list[str]:
        plan, lag, ratio = self.plan, self.lag, self.ratio
        deliveries = max(1, len(lag.samples_ms))
        return [
            f"{plan.watchers} watches over {self.workers} workers "
            f"({plan.clients} client processes)",
            f"Get without watches: {_get_figures(self.without)}",
            f"Get with the watches open: {_get_figures(self.with_watches)}",
            f"  ratio {ratio:.2f} (target >= {UNARY_RATIO:.2f}: "
            f"{'met' if ratio >= UNARY_RATIO else 'MISSED'})",
            f"lag from acknowledgement to event, at every watcher, {plan.writes} writes "
            f"at {plan.rate:g}/s: p50 {lag.percentile(0.5):.0f} ms, "
            f"p99 {lag.percentile(0.99):.0f} ms, max {lag.percentile(1.0):.0f} ms",
            f"  {len(lag.samples_ms):,} deliveries, {lag.missing} missing, "
            f"{lag.duplicates} duplicated (target p99 <= {LAG_P99_MS:g} ms: "
            f"{'met' if self.lag_met else 'MISSED'})",
            f"  CPU: server {self.server_cpu_seconds:.1f} s "
            f"({self.server_cpu_seconds / deliveries * 1e6:.0f} us per delivery), "
            f"watch clients {self.client_cpu_seconds:.1f} s",
            f"peak RSS per worker: {', '.join(f'{mb:.0f} MB' for mb in self.rss_mb)}",
        ]


# Issue 15's targets: the lag's p99 at every watcher, and Get's throughput with the watches open
# against without.
LAG_P99_MS = 1000.0
UNARY_RATIO = 0.9


def _get_figures(m: phases.Measurement) -> str:
    p50, p99 = m.result.percentile_ms(0.5), m.result.percentile_ms(0.99)
    verified = "verified" if m.verified else "FAILED: " + "; ".join(m.problems)
    return f"{m.rps:,.0f} req/s (p50 {p50:.2f} ms, p99 {p99:.2f} ms, {verified})"


def _get_phase(
    target: phases.Target, world: seed.World, plan: Plan, workdir: Path, name: str, title: str
) -> phases.Measurement:
    """The bench's gRPC GetExperiment phase (h2load, 32 in flight), measured once."""
    phase = phases.grpc_phase(
        "get",
        title,
        target.port,
        f"/{phases.SERVICE}/GetExperiment",
        phases.get_request(world),
        world,
    )
    measurement = phases.measure(phase, target, plan.duration, plan.warmup, workdir, name)
    print(f"bench: {name}: {_get_figures(measurement)}", file=sys.stderr, flush=True)
    return measurement


def fan_out(target: phases.Target, world: seed.World, plan: Plan, workdir: Path) -> Figures:
    """On a running server: Get without watches, then with `plan.watchers` open, then the lag
    of `plan.writes` updates at every watcher (`make bench`'s watch phase)."""
    without = _get_phase(
        target, world, plan, workdir, "get-without-watches", "gRPC Get, no watch open"
    )
    with open_watchers(target.port, world, plan.watchers, plan.clients) as clients:
        spread = procstats.connections_per_worker(target.workers, target.port)
        print(f"bench: watches open; connections per worker {spread}", file=sys.stderr)
        with_watches = _get_phase(
            target,
            world,
            plan,
            workdir,
            "get-with-watches",
            f"gRPC Get, {plan.watchers:,} watches open",
        )
        pids = [client.process.pid for client in clients]
        server_cpu = procstats.cpu_seconds(target.processes)
        client_cpu = procstats.cpu_seconds(pids)
        lag = lag_phase(target.port, world, clients, plan.watchers, plan.writes, plan.rate)
        return Figures(
            plan,
            len(target.workers),
            without,
            with_watches,
            lag,
            procstats.cpu_seconds(target.processes) - server_cpu,
            procstats.cpu_seconds(pids) - client_cpu,
            [procstats.peak_rss_mb(pid) for pid in target.workers],
        )


def measure(options: argparse.Namespace, workdir: Path) -> Figures:
    from bench.run import prepare  # bench.run imports this module for its watch phase

    plan = Plan(
        options.watchers,
        options.clients,
        options.writes,
        options.rate,
        options.duration,
        options.warmup,
    )
    with stack.fresh_database(options.database_url, workdir, "db", False) as database:
        world = prepare(database, options.experiments)
        server = stack.start_server(database, options.workers, workdir, "server")
        try:
            target = phases.Target(server.processes, server.workers, server.port, server.log)
            return fan_out(target, world, plan, workdir)
        finally:
            server.stop()


def run(options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-watchers-") as folder:
        figures = measure(options, Path(folder))
    print("\n".join(figures.lines()))
    return 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2, help="client processes holding them")
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="writes per second")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--experiments", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per Get phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    if options.client:
        port, organization, key, count = options.client.split(",")
        asyncio.run(_hold_watches(int(port), organization, key, int(count)))
        return 0
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
