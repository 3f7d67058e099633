"""The benchmark's phases: the requests they send, one measured run each, and its verification.

A phase sends one request over and over, 32 in flight, for a fixed time after a warm-up
run, and is measured on both sides: h2load reports counts, bytes and per-request
latencies; /proc gives the CPU the server (and Envoy) spent and the workers' peak memory;
the server's log gives the gRPC status of every call it handled.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
from experiments.v5 import experiments_pb2 as pb
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from bench import loadgen, mixed, procstats, seed, stack

SERVICE = "experiments.v5.ExperimentService"
IN_FLIGHT = 32
# 8 connections x 4 streams: SO_REUSEPORT spreads connections over the workers by a hash,
# and with only 4 connections all of them land on one of two workers one time in eight.
GRPC_CLIENTS = 8
GRPC_STREAMS = IN_FLIGHT // GRPC_CLIENTS
PAGE_SIZE = 25
# Responses that carry fresh timestamps (create, update) vary by a few bytes in size.
VARIABLE_SLACK_BYTES = 16
# CPU used by programs outside the benchmark beyond which a phase is flagged as disturbed.
BUSY_ELSEWHERE_CORES = 0.2


@dataclass(frozen=True)
class Phase:
    key: str  # names its files in the run folder
    title: str  # its row in the table
    load: loadgen.Load
    method: str | None  # the RPC in the server's log; None for the echo ceiling
    response_bytes: tuple[int, int]  # body bytes of one successful response, min and max
    exact: bool = True  # every response has a size in response_bytes (else: about it)
    http_status: int = 200
    rest: bool = False
    # Runs the load itself for the given seconds instead of h2load (the mixed phase).
    runner: Callable[[float], loadgen.Result] | None = None


@dataclass
class Measurement:
    phase: Phase
    result: loadgen.Result
    server_cpu_seconds: float
    gateway_cpu_seconds: float | None
    database_cpu_seconds: float | None  # PostgreSQL's processes; SQLite runs in the server
    machine_cpu_seconds: float
    peak_rss_mb: list[float]
    connections: list[int]
    rpc_calls: list[tuple[str, str]] | None  # (method, status) as the server logged them
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.result.rps

    def per_request_us(self, seconds: float | None) -> float | None:
        if seconds is None or not self.result.succeeded:
            return None
        return seconds / self.result.succeeded * 1e6

    @property
    def server_cores(self) -> float:
        return self.server_cpu_seconds / self.result.seconds

    @property
    def machine_cores(self) -> float:
        return self.machine_cpu_seconds / self.result.seconds

    @property
    def other_cores(self) -> float:
        """CPU the machine spent beyond the processes of the benchmark: other programs."""
        ours = (
            self.server_cpu_seconds
            + (self.gateway_cpu_seconds or 0)
            + (self.database_cpu_seconds or 0)
            + self.result.client_cpu_seconds
        )
        return max(0.0, self.machine_cpu_seconds - ours) / self.result.seconds

    @property
    def client_cpu_percent(self) -> float:
        return 100 * self.result.client_cpu_seconds / self.result.seconds

    @property
    def verified(self) -> bool:
        return not self.problems


# --- requests ----------------------------------------------------------------------------


def _value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def published_experiment(world: seed.World, name: str) -> pb.Experiment:
    """A valid published experiment of the world's organization that starts in 2035:
    three groups with treatments, a goal and two rooms, like the seeded ones."""
    groups = []
    for position, (percentage, group_type) in enumerate(
        zip((34, 33, 33), ("control", "user_defined", "target_random"), strict=True)
    ):
        treatment = seed.treatment_example(position)
        groups.append(
            pb.Group(
                name="Control" if position == 0 else f"Variant {chr(64 + position)}",
                percentage=percentage,
                group_type=_value(group_type),
                treatment=json_format.ParseDict(treatment, struct_pb2.Struct()),
            )
        )
    return pb.Experiment(
        is_draft=False,
        name=name,
        goal_id=str(world.goal_ids[0]),
        starts_at=_timestamp(seed.FUTURE_START),
        group_reset_interval="1w",
        room_ids=[str(room) for room in world.room_ids[:2]],
        groups=groups,
    )


def grpc_call(
    port: int, path: str, message: bytes, world: seed.World, key: str | None = None
) -> bytes:
    """One unary call with raw bytes in and out (with `key`, by default the world's); raises
    grpc.RpcError unless it is OK."""
    metadata = (("authorization", f"Token {key or world.api_key}"),)
    with grpc.insecure_channel(f"{stack.HOST}:{port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        response: bytes = call(message, metadata=metadata, timeout=10)
        return response


def rest_get(url: str, world: seed.World, key: str | None = None) -> bytes:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Token {key or world.api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"GET {url}: {error.code} {error.read()!r}") from None


def grpc_phase(
    key: str,
    title: str,
    port: int,
    path: str,
    request: bytes,
    world: seed.World,
    *,
    variable: bool = False,
    api_key: str | None = None,
) -> Phase:
    """A gRPC phase, after one call of the same request that must succeed (its response
    size is what every response of the phase must have); with `api_key`, by default the
    world's."""
    try:
        size = len(loadgen.grpc_frame(grpc_call(port, path, request, world, api_key)))
    except grpc.RpcError as error:
        raise RuntimeError(f"{title}: the first call failed: {error}") from None
    slack = VARIABLE_SLACK_BYTES if variable else 0
    headers: tuple[str, ...] = loadgen.GRPC_HEADERS
    if path.startswith(f"/{SERVICE}/"):
        headers += (f"authorization: Token {api_key or world.api_key}",)
    return Phase(
        key=key,
        title=title,
        load=loadgen.Load(
            urls=(f"http://{stack.HOST}:{port}{path}",),
            headers=headers,
            body=loadgen.grpc_frame(request),
            clients=GRPC_CLIENTS,
            streams=GRPC_STREAMS,
        ),
        method=path if path.startswith(f"/{SERVICE}/") else None,
        response_bytes=(size - slack, size + slack),
        exact=not variable,
    )


def rest_phase(
    key: str,
    title: str,
    urls: list[str],
    method: str,
    world: seed.World,
    api_key: str | None = None,
) -> Phase:
    """A REST GET phase over HTTP/1.1 (one request per connection at a time, 32 connections),
    the URLs taken in turn; each is fetched once first and must answer 200. With `api_key`,
    by default the world's."""
    api_key = api_key or world.api_key
    sizes = [len(rest_get(url, world, api_key)) for url in urls]
    return Phase(
        key=key,
        title=title,
        load=loadgen.Load(
            urls=tuple(urls),
            headers=(f"authorization: Token {api_key}",),
            clients=IN_FLIGHT,
            http1=True,
        ),
        method=f"/{SERVICE}/{method}",
        response_bytes=(min(sizes), max(sizes)),
        rest=True,
    )


def echo_phase(port: int, world: seed.World) -> Phase:
    """The ceiling: the GetExperiment request's bytes echoed back by a bare gRPC server."""
    request = get_request(world)
    return grpc_phase("echo", "echo ceiling (gRPC)", port, "/bench.Echo/Echo", request, world)


def assign_floor_phase(port: int, world: seed.World) -> Phase:
    """AssignVisitor's work alone on the echo's server (bench/echo_server.py --assign-from):
    the assignment phase's request, answered by the same functions, without the service."""
    phase = grpc_phase(
        "assign-floor",
        f"AssignVisitor's work alone, echo's server ({seed.ASSIGNING_EXPERIMENTS} experiments)",
        port,
        f"/{SERVICE}/AssignVisitor",
        assign_request(world),
        world,
        api_key=world.assigning_api_key,
    )
    return replace(phase, method=None)  # not the service: no log to verify, no RSS target


def get_request(world: seed.World) -> bytes:
    return pb.GetExperimentRequest(
        organization_id=str(world.organization_id),
        experiment_id=str(world.get_experiment_id),
    ).SerializeToString()


# The visitor of the assignment phases: one visitor, now, in the room where all of the
# organization's seed.ASSIGNING_EXPERIMENTS apply, as an internal service asks.
ASSIGNED_VISITOR = "visitor-2f8d1c"


def assign_request(world: seed.World) -> bytes:
    return pb.AssignVisitorRequest(
        organization_id=str(world.assigning_organization_id),
        visitor_id=ASSIGNED_VISITOR,
        room_id=str(world.assigning_room_id),
    ).SerializeToString()


def service_phases(
    grpc_port: int, http_port: int | None, world: seed.World, *, reads_only: bool = False
) -> list[Callable[[], Phase]]:
    """The phases against the service, reads before writes (creates grow the listed
    organization, and each first call must see the data the phase will see)."""
    org = str(world.organization_id)
    rpc = f"/{SERVICE}/"
    phases: list[Callable[[], Phase]] = [
        lambda: grpc_phase(
            "grpc-get",
            "gRPC GetExperiment",
            grpc_port,
            rpc + "GetExperiment",
            get_request(world),
            world,
        ),
        lambda: grpc_phase(
            "grpc-list",
            f"gRPC ListExperiments ({PAGE_SIZE})",
            grpc_port,
            rpc + "ListExperiments",
            pb.ListExperimentsRequest(organization_id=org, page_size=PAGE_SIZE).SerializeToString(),
            world,
        ),
        lambda: grpc_phase(
            "grpc-assign",
            f"gRPC AssignVisitor ({seed.ASSIGNING_EXPERIMENTS} experiments)",
            grpc_port,
            rpc + "AssignVisitor",
            assign_request(world),
            world,
            api_key=world.assigning_api_key,
        ),
    ]
    if http_port is not None:
        base = f"http://{stack.HOST}:{http_port}/api/v5/orgs/{org}/experiments"
        ids = [world.get_experiment_id, *world.read_experiment_ids]
        query = urlencode({"visitor_id": ASSIGNED_VISITOR, "room_id": world.assigning_room_id})
        assignments = (
            f"http://{stack.HOST}:{http_port}/api/v5/orgs/{world.assigning_organization_id}"
            f"/assignments?{query}"
        )
        phases += [
            lambda: rest_phase(
                "rest-get",
                f"REST GET experiment ({len(ids)} ids)",
                [f"{base}/{i}" for i in ids],
                "GetExperiment",
                world,
            ),
            lambda: rest_phase(
                "rest-list",
                f"REST GET list ({PAGE_SIZE})",
                [f"{base}?page_size={PAGE_SIZE}"],
                "ListExperiments",
                world,
            ),
            lambda: rest_phase(
                "rest-assign",
                f"REST GET assignments ({seed.ASSIGNING_EXPERIMENTS} experiments)",
                [assignments],
                "AssignVisitor",
                world,
                world.assigning_api_key,
            ),
        ]
    if reads_only:
        return phases
    update = pb.UpdateExperimentRequest(
        organization_id=org,
        experiment_id=str(world.update_experiment_id),
        experiment=published_experiment(world, "Benchmark update"),
    ).SerializeToString()
    create = pb.CreateExperimentRequest(
        organization_id=org, experiment=published_experiment(world, "Benchmark create")
    ).SerializeToString()
    phases += [
        lambda: grpc_phase(
            "grpc-update",
            "gRPC UpdateExperiment",
            grpc_port,
            rpc + "UpdateExperiment",
            update,
            world,
            variable=True,
        ),
        lambda: grpc_phase(
            "grpc-create",
            "gRPC CreateExperiment",
            grpc_port,
            rpc + "CreateExperiment",
            create,
            world,
            variable=True,
        ),
    ]
    phases.append(lambda: mixed_phase(grpc_port, world))
    return phases


def mixed_phase(grpc_port: int, world: seed.World) -> Phase:
    shares = "/".join(str(share) for _, share in mixed.MIX)
    return Phase(
        key="mixed",
        title=f"mixed {shares} ({mixed.CLIENTS} clients)",
        load=loadgen.Load(urls=()),
        method=None,
        # Any size: the responses differ by RPC; failures are counted by the client itself.
        response_bytes=(0, 1 << 30),
        exact=False,
        runner=lambda seconds: mixed.run(grpc_port, world, published_experiment, seconds),
    )


# --- one measured run ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the load goes: the processes that serve it, and how to watch them."""

    processes: tuple[int, ...]  # CPU: the server's parent and workers
    workers: tuple[int, ...]  # memory and connections: the workers
    port: int
    log: stack.RpcLog | None = None
    gateway_pid: int | None = None
    database: str | None = None  # command name of the database's processes (postgres)


def measure(
    phase: Phase, target: Target, seconds: float, warmup: float, workdir: Path, name: str = ""
) -> Measurement:
    """A warm-up run, then the measured run of `seconds`, then the checks. h2load's files
    are named after `name` (default: the phase's key) in workdir."""
    name = name or phase.key

    def run(seconds: float, name: str) -> loadgen.Result:
        if phase.runner is None:
            return loadgen.run(phase.load, seconds, workdir, name)
        result = phase.runner(seconds)
        (workdir / f"{name}.txt").write_text(result.output + "\n")
        return result

    if warmup > 0:
        run(warmup, f"{name}.warmup")
    # Calls still in flight when the warm-up stopped must not count in the measured window.
    start = target.log.settle() if target.log else 0
    database_pids = procstats.named(target.database) if target.database else []
    server_cpu = procstats.cpu_seconds(target.processes)
    database_cpu = procstats.cpu_seconds(database_pids)
    machine_cpu = procstats.machine_busy_seconds()
    gateway_cpu = procstats.cpu_seconds([target.gateway_pid]) if target.gateway_pid else 0.0
    connections: list[int] = []
    # Connections are counted a little after the load started, when all are open.
    sampler = threading.Timer(
        min(1.0, seconds / 2),
        lambda: connections.extend(procstats.connections_per_worker(target.workers, target.port)),
    )
    sampler.start()
    try:
        result = run(seconds, name)
    finally:
        sampler.cancel()
        sampler.join()
    server_cpu = procstats.cpu_seconds(target.processes) - server_cpu
    machine_cpu = procstats.machine_busy_seconds() - machine_cpu
    database_cpu = procstats.cpu_seconds(database_pids) - database_cpu
    gateway = None
    if target.gateway_pid:
        gateway = procstats.cpu_seconds([target.gateway_pid]) - gateway_cpu
    calls = None
    if target.log:
        calls = target.log.calls(start, target.log.settle())
    measurement = Measurement(
        phase=phase,
        result=result,
        server_cpu_seconds=server_cpu,
        gateway_cpu_seconds=gateway,
        database_cpu_seconds=database_cpu if target.database else None,
        machine_cpu_seconds=machine_cpu,
        peak_rss_mb=[procstats.peak_rss_mb(pid) for pid in target.workers],
        connections=connections,
        rpc_calls=calls,
    )
    measurement.problems, measurement.notes = verify(measurement)
    if measurement.other_cores > BUSY_ELSEWHERE_CORES:
        measurement.notes.append(
            f"other programs kept {measurement.other_cores:.2f} cores busy during this phase: "
            "its figures are disturbed; run again on a quiet machine"
        )
    return measurement


def verify(m: Measurement) -> tuple[list[str], list[str]]:
    """Every way the run could have had a failed call, each checked independently; returns
    the problems (any fails the run) and notes.

    1. h2load: every request it sent and finished got HTTP 200 (per-request log rows too).
       For gRPC this alone proves nothing: errors are HTTP 200 with grpc-status != 0.
    2. Bytes: the body bytes received are at least the number of successes times the size
       of the response the phase's first call got (exact for fixed responses; within a few
       bytes per call for create/update), and at most that plus the part bodies of the
       calls cut off at the end. A gRPC error carries no message (0 bytes), a REST error a
       short JSON status, so failures make the total come up short.
    3. The server's log (for the service): in the measured window, at least as many calls
       of the phase's RPC ended OK as h2load counted successes, and none ended otherwise,
       except among the last calls, those h2load cut off when time was up (it started them
       but resets their streams unanswered; the server sees them cancelled).
    """
    r, phase = m.result, m.phase
    problems, notes = [], []
    if r.succeeded == 0:
        problems.append("no request succeeded")
    if r.failed or r.errored or r.timeout:
        problems.append(f"h2load: {r.failed} failed, {r.errored} errored, {r.timeout} timeout")
    # Streams cut off at the end may have had their 200 headers already: 2xx >= succeeded.
    other_classes = r.status_classes["3xx"] + r.status_classes["4xx"] + r.status_classes["5xx"]
    if other_classes or r.done != r.succeeded or r.status_classes["2xx"] < r.succeeded:
        problems.append(f"h2load: {r.done} done, {r.succeeded} succeeded, {r.status_classes}")
    logged = sum(r.logged_statuses.values())
    unexpected = {s: n for s, n in r.logged_statuses.items() if s != phase.http_status}
    if unexpected or logged != r.succeeded:
        problems.append(
            f"h2load log: {logged} rows, HTTP statuses other than expected: {unexpected}"
        )
    # Streams cut off at the end may have received part of their body before the reset.
    cut_off = r.started - r.succeeded
    low = r.succeeded * phase.response_bytes[0]
    high = r.succeeded * phase.response_bytes[1]
    if not low <= r.data_bytes <= high + cut_off * phase.response_bytes[1]:
        problems.append(
            f"received {r.data_bytes} body bytes; {r.succeeded} responses of "
            f"{phase.response_bytes[0]}..{phase.response_bytes[1]} bytes make {low}..{high}"
        )
    if m.rpc_calls is not None and phase.method is not None:
        statuses = [status for method, status in m.rpc_calls if method == phase.method]
        ok = statuses.count("OK")
        if not r.succeeded <= ok <= len(statuses) <= r.started:
            problems.append(
                f"server log: {ok} of {len(statuses)} {phase.method} calls OK; h2load: "
                f"{r.succeeded} succeeded of {r.started} started"
            )
        failed = [i for i, status in enumerate(statuses) if status != "OK"]
        tail = dict(Counter(statuses[i] for i in failed))
        if failed and failed[0] < len(statuses) - cut_off:
            problems.append(f"server log: calls that did not end OK: {tail}")
        elif set(tail) - {"CANCELLED"}:
            notes.append(
                f"of the {cut_off} calls h2load cut off when time was up, the server logged "
                f"{tail}: a cancelled call should be CANCELLED"
            )
        others = Counter(c for c in m.rpc_calls if c[0] != phase.method and c[1] != "OK")
        if others:
            problems.append(f"server log: other calls that did not end OK: {dict(others)}")
    if m.rpc_calls is not None and phase.method is None:
        # The mixed phase: every call the server logged ended OK (the client waits for each
        # of its calls, so none is cut off), and it logged at least the client's successes.
        ended = Counter(status for _, status in m.rpc_calls)
        if set(ended) - {"OK"} or ended["OK"] < r.succeeded:
            problems.append(f"server log: {dict(ended)}; client: {r.succeeded} succeeded")
    return problems, notes
