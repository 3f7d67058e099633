"""`make bench`: the service's throughput and latency against a bare gRPC echo ceiling.

One run seeds a fresh database (10,000 experiments over 100 organizations by default),
measures a bare gRPC echo server with the service's process model (the ceiling), then starts
experiments-server and Envoy on free ports and drives, each for a fixed time at 32 requests
in flight after a warm-up: gRPC GetExperiment, ListExperiments (a page of 25),
UpdateExperiment and CreateExperiment, and the REST Get and List through Envoy. It checks
that every call succeeded and prints one table with the targets. See bench/README.md.

    .venv/bin/python -m bench.run [--quick] [--duration S] [--workers N] [--experiments N]
                                     [--database-url URL] [--sizes 1000,100000]

Every flag also reads an environment variable (BENCH_DURATION, BENCH_WORKERS,
BENCH_EXPERIMENTS, BENCH_DATABASE_URL, BENCH_SIZES, BENCH_WARMUP, BENCH_QUICK=1), so that
`make bench BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test` works.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import abuse, loadgen, phases, report, seed, stack, watchers, write_floor
from gateway import launcher
from server.adapters.database import make_engine
from server.adapters.schema import upgrade
from server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    workers: int
    experiments: int
    database_url: str | None
    sizes: tuple[int, ...]
    keep: bool
    command: str
    watch: watchers.Plan | None  # the watch phase; None: skipped

    @property
    def backend(self) -> str:
        url = self.database_url
        return "sqlite" if url is None else make_url(url).get_backend_name()


def parse_options(argv: Sequence[str] | None = None) -> Options:
    env = os.environ
    parser = argparse.ArgumentParser(
        description="Load benchmark of the Experiments service against a gRPC echo ceiling."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=env.get("BENCH_QUICK", "") not in ("", "0"),
        help="a smoke run: 3 s per phase after 1 s of warm-up, 1,000 experiments",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=float(env.get("BENCH_DURATION", 0)) or None,
        help="measured seconds per phase (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=float(env.get("BENCH_WARMUP", 0)) or None,
        help="warm-up seconds before each phase (default 2)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env.get("BENCH_WORKERS", 0)) or os.cpu_count() or 1,
        help="server processes, for the service and the echo ceiling alike (default: CPUs)",
    )
    parser.add_argument(
        "--experiments",
        type=int,
        default=int(env.get("BENCH_EXPERIMENTS", 0)) or None,
        help="experiments to seed (default 10,000)",
    )
    parser.add_argument(
        "--database-url",
        default=env.get("BENCH_DATABASE_URL") or None,
        help="SQLite (default: a file in the run folder) or a PostgreSQL server, "
        "postgresql+psycopg://user@host:5432/db, where a fresh database is created and dropped",
    )
    parser.add_argument(
        "--sizes",
        default=env.get("BENCH_SIZES", ""),
        help="e.g. 1000,100000: only Get and List, at each table size, and whether p50 stays flat",
    )
    parser.add_argument(
        "--watchers",
        type=int,
        default=int(env.get("BENCH_WATCHERS", watchers.Plan.watchers)),
        help="watches open in the watch phase (default 1,000; 0 skips the phase)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (the run folder keeps the logs)"
    )
    args = parser.parse_args(argv)
    sizes = tuple(int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip())
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = args.warmup or (1.0 if args.quick else 2.0)
    # The watch phase: 1,000 watches either way; a quick run writes 20 times rather than 50.
    watch = watchers.Plan(
        watchers=args.watchers,
        writes=20 if args.quick else watchers.Plan.writes,
        duration=duration,
        warmup=warmup,
    )
    return Options(
        duration=duration,
        warmup=warmup,
        workers=args.workers,
        experiments=args.experiments or (1_000 if args.quick else 10_000),
        database_url=args.database_url,
        sizes=sizes,
        keep=args.keep,
        command=" ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)]),
        watch=watch if args.watchers > 0 else None,
    )


def ensure_tools() -> None:
    """h2load comes from Debian's nghttp2-client, Envoy from the `gateway` extra of
    `make install`; the benchmark installs neither."""
    if shutil.which("h2load") is None:
        raise launcher.StartupError("h2load is missing: sudo apt-get install nghttp2-client")
    launcher.envoy_binary()


def database_processes(options: Options) -> str | None:
    """The command name of the database server's processes, whose CPU is counted apart."""
    return "postgres" if options.backend == "postgresql" else None


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def prepare(database: str, experiments: int) -> seed.World:
    started = time.perf_counter()
    upgrade(database)
    engine = make_engine(database)
    try:
        world = seed.seed(engine, experiments)
    finally:
        engine.dispose()
    say(
        f"seeded {experiments:,} experiments over {seed.ORGANIZATIONS} organizations "
        f"in {time.perf_counter() - started:.1f} s; the measured organization has "
        f"{world.organization_experiments:,}"
    )
    return world


# The echo ceiling's threads per worker: of 4, 8 and 16, each with the workers pinned and not,
# 8 pinned served the most (12,700-13,500 RPS against 4,200-9,500 unpinned; bench/README.md).
ECHO_THREADS = 8


def measure_echo(options: Options, world: seed.World, workdir: Path) -> phases.Measurement:
    # The ceiling is the fastest bare grpcio echo with the server's process model (one sync
    # server per worker process sharing the port): each worker pinned to a core of its own.
    echo = stack.start_echo(options.workers, ECHO_THREADS, affinity=True)
    try:
        target = phases.Target(echo.processes, echo.workers, echo.port)
        return run_phase(phases.echo_phase(echo.port, world), target, options, workdir)
    finally:
        echo.stop()


def measure_assign_floor(
    options: Options, world: seed.World, workdir: Path, database: str
) -> phases.Measurement:
    """AssignVisitor's own work alone (no key, interceptor, log line or admission) on the
    echo's server, pinned like it: the most any implementation of the call on this process
    model could serve, beside which the assignment target is read (bench/README.md)."""
    floor = stack.start_echo(
        options.workers,
        ECHO_THREADS,
        affinity=True,
        assign_from=(database, world.assigning_organization_id),
    )
    try:
        target = phases.Target(floor.processes, floor.workers, floor.port)
        return run_phase(phases.assign_floor_phase(floor.port, world), target, options, workdir)
    finally:
        floor.stop()


def measure_write_floors(database: str, world: seed.World) -> list[write_floor.WriteFloor]:
    """Create's and Update's own work alone, in this process: what any server around them
    could serve at most, beside which the write targets are read (bench/write_floor.py)."""
    floors = write_floor.measure(database, world)
    for floor in floors:
        say(
            f"{floor.key}'s work alone, in-process: {floor.cpu_us_per_call:,.0f} us of CPU "
            f"per call ({floor.calls} calls)"
        )
    return floors


def run_phase(
    phase: phases.Phase, target: phases.Target, options: Options, workdir: Path, name: str = ""
) -> phases.Measurement:
    m = phases.measure(phase, target, options.duration, options.warmup, workdir, name)
    say(
        f"{phase.title}: {m.rps:,.0f} req/s, p50 {m.result.percentile_ms(0.5):.2f} ms, "
        f"p99 {m.result.percentile_ms(0.99):.2f} ms, connections per worker "
        f"{'/'.join(map(str, m.connections))}, {'verified' if m.verified else 'FAILED'}"
    )
    for problem in m.problems:
        say(f"  {problem}")
    for note in m.notes:
        say(f"  note: {note}")
    return m


def full_run(options: Options, workdir: Path) -> tuple[str, bool]:
    with stack.fresh_database(options.database_url, workdir, "db", options.keep) as database:
        world = prepare(database, options.experiments)
        db_processes = database_processes(options)
        echo = measure_echo(options, world, workdir)
        measurements = [echo, measure_assign_floor(options, world, workdir, database)]
        server = stack.start_server(database, options.workers, workdir, "server")
        envoy: launcher.Envoy | None = None
        try:
            envoy = stack.start_gateway(server, workdir, "gateway")
            grpc_target = phases.Target(
                server.processes, server.workers, server.port, server.log, None, db_processes
            )
            rest_target = replace(grpc_target, gateway_pid=envoy.process.pid)
            for make in phases.service_phases(server.port, envoy.http_port, world):
                phase = make()
                target = rest_target if phase.rest else grpc_target
                measurements.append(run_phase(phase, target, options, workdir))
            abused = run_abuse(server, envoy, world, options)
            watched = None
            if options.watch is not None:
                watched = watchers.fan_out(grpc_target, world, options.watch, workdir)
        finally:
            if envoy is not None:
                envoy.stop()
            server.stop()
        # Last, in this process, with the machine otherwise idle (it adds experiments).
        floors = measure_write_floors(database, world)
    verdicts = report.targets(
        measurements, echo.rps, options.backend, options.experiments, floors, options.workers
    )
    verdicts += report.abuse_targets(abused)
    text = [
        report.table(measurements, echo.rps),
        "",
        f"Abuse ({abused.seconds:.0f} s; bench/abuse.py, after the phases above):",
        *(f"  {line}" for line in abused.lines()),
        "",
    ]
    if watched is not None:
        # Their calls are verified like every phase's (finish); the table keeps the main Get.
        measurements += [watched.without, watched.with_watches]
        verdicts += report.watch_targets(watched)
        text += [
            "Watches (bench/watchers.py, after the abuse phase; gRPC Get measured again just"
            " before the watches open and while they are):",
            *(f"  {line}" for line in watched.lines()),
            "",
        ]
    text += [
        f"Targets ({options.backend}, {options.experiments:,} experiments, "
        f"{options.workers} workers):",
        *(v.line() for v in verdicts),
    ]
    return finish(text, measurements)


def run_abuse(
    server: stack.Server, envoy: launcher.Envoy, world: seed.World, options: Options
) -> abuse.Report:
    """The abuse phase: abusive clients beside a well-behaved reader, for a phase's time."""
    target = abuse.Target(
        grpc_port=server.port,
        envoy=envoy,
        api_key=world.api_key,
        organization_id=str(world.organization_id),
        experiment_id=str(world.get_experiment_id),
        workers=server.workers,
    )
    report_ = abuse.run(target, options.duration)
    say("abuse: " + "; ".join(report_.lines()))
    return report_


def sizes_run(options: Options, workdir: Path) -> tuple[str, bool]:
    by_size: dict[int, list[phases.Measurement]] = {}
    echo: phases.Measurement | None = None
    for size in options.sizes:
        label = f"db{size}"
        with stack.fresh_database(options.database_url, workdir, label, options.keep) as database:
            world = prepare(database, size)
            if echo is None:
                echo = measure_echo(options, world, workdir)
            server = stack.start_server(database, options.workers, workdir, f"server{size}")
            try:
                target = phases.Target(
                    server.processes,
                    server.workers,
                    server.port,
                    server.log,
                    None,
                    database_processes(options),
                )
                by_size[size] = []
                for make in phases.service_phases(server.port, None, world, reads_only=True):
                    phase = make()
                    name = f"{phase.key}-{size}"
                    by_size[size].append(run_phase(phase, target, options, workdir, name))
            finally:
                server.stop()
    assert echo is not None
    flat_table, verdicts = report.flatness(by_size)
    text = [flat_table, ""]
    for size, measurements in by_size.items():
        text += [f"{size:,} experiments:", report.table([echo, *measurements], echo.rps), ""]
    text += [f"Targets ({options.backend}, {options.workers} workers):"]
    text += [v.line() for v in verdicts]
    everything = [echo, *(m for ms in by_size.values() for m in ms)]
    return finish(text, everything)


def finish(text: list[str], measurements: Sequence[phases.Measurement]) -> tuple[str, bool]:
    notes = [f"{m.phase.title}: {note}" for m in measurements for note in m.notes]
    if notes:
        text += ["", "Notes:", *(f"  {note}" for note in notes)]
    problems = report.problems(measurements)
    if problems:
        text += ["", "FAILED verification (see bench/README.md, 'Verification'):"]
        text += [f"  {p}" for p in problems]
    return "\n".join(text), not problems


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        ensure_tools()
    except launcher.StartupError as error:
        say(str(error))
        return 1
    workdir = RESULTS / time.strftime("%Y%m%d-%H%M%S")
    workdir.mkdir(parents=True, exist_ok=True)
    machine = report.machine()
    pinned = Settings.from_env(stack.service_environment()).worker_affinity
    header = [
        f"Machine: {machine['nproc']} CPUs, {machine['cpu']}, Python {machine['python']}, "
        f"Linux {machine['kernel']}, SQLite {machine['sqlite']}, h2load {machine['h2load']}",
        f"Code: {machine['code']}; command: {options.command}",
        f"Each phase: {options.duration:g} s measured after {options.warmup:g} s of warm-up, "
        f"{phases.IN_FLIGHT} requests in flight (gRPC: {phases.GRPC_CLIENTS} connections x "
        f"{phases.GRPC_STREAMS} streams; REST: {phases.IN_FLIGHT} HTTP/1.1 connections), "
        f"{options.workers} server workers; database: {options.backend}",
        f"Echo ceiling: {ECHO_THREADS} threads per worker, each worker pinned to a core; the "
        f"service's workers pinned: {'yes' if pinned else 'no'} (EXPERIMENTS_WORKER_AFFINITY; "
        "the bench pins them unless it is set)",
        "",
    ]
    say(f"run folder: {workdir.relative_to(ROOT)}")
    try:
        body, ok = sizes_run(options, workdir) if options.sizes else full_run(options, workdir)
    except (launcher.StartupError, loadgen.H2loadError, RuntimeError) as error:
        say(f"failed: {error}")
        return 1
    text = "\n".join([*header, body])
    (workdir / "report.md").write_text(text + "\n")
    print(text)
    say(f"report, logs and h2load output in {workdir.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
