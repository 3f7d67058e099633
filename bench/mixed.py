"""The mixed phase: 64 clients, each calling one RPC after another in the issue's proportions
(60% Get, 20% List, 15% Update, 5% Create), with grpcio, since h2load sends one request only.

Bounded twice: by time (the phase's seconds) and by count (MAX_CALLS). Each client is a
thread with its own random sequence (seeded: the same mix every run); 8 channels (HTTP/2
connections) carry the 64 clients, as h2load's 8 connections carry the other phases, so
that SO_REUSEPORT spreads them over the workers. Every call must end OK: a failed call is
counted and fails the phase (phases.verify). The result has h2load's shape (loadgen.Result),
so the table and the checks treat the phase like the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from experiments.v5 import experiments_pb2 as pb

from bench import loadgen, seed

SERVICE = "experiments.v5.ExperimentService"
CLIENTS = 64
CHANNELS = 8
MAX_CALLS = 500_000
CALL_TIMEOUT_SECONDS = 30.0
# The mix, in percent.
MIX = (
    ("GetExperiment", 60),
    ("ListExperiments", 20),
    ("UpdateExperiment", 15),
    ("CreateExperiment", 5),
)


@dataclass(frozen=True)
class _Call:
    method: str
    requests: tuple[bytes, ...]  # one is picked at random per call


def _calls(world: seed.World, published: Callable[[seed.World, str], pb.Experiment]) -> list[_Call]:
    org = str(world.organization_id)
    ids = [world.get_experiment_id, *world.read_experiment_ids]
    by_method = {
        "GetExperiment": tuple(
            pb.GetExperimentRequest(organization_id=org, experiment_id=str(i)).SerializeToString()
            for i in ids
        ),
        "ListExperiments": (
            pb.ListExperimentsRequest(organization_id=org, page_size=25).SerializeToString(),
        ),
        # The same published experiment that starts in 2035, as the Update phase does.
        "UpdateExperiment": (
            pb.UpdateExperimentRequest(
                organization_id=org,
                experiment_id=str(world.update_experiment_id),
                experiment=published(world, "Mixed update"),
            ).SerializeToString(),
        ),
        "CreateExperiment": (
            pb.CreateExperimentRequest(
                organization_id=org, experiment=published(world, "Mixed create")
            ).SerializeToString(),
        ),
    }
    return [_Call(method, by_method[method]) for method, share in MIX for _ in range(share)]


def run(
    port: int,
    world: seed.World,
    published: Callable[[seed.World, str], pb.Experiment],
    seconds: float,
) -> loadgen.Result:
    calls = _calls(world, published)
    metadata = (("authorization", f"Token {world.api_key}"),)
    # A local subchannel pool each: grpcio otherwise shares one connection between channels to
    # the same address, and all 64 clients landed on one worker (SO_REUSEPORT spreads
    # connections, not calls).
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CHANNELS)
    ]
    stubs: list[dict[str, Any]] = [
        {call.method: channel.unary_unary(f"/{SERVICE}/{call.method}") for call in calls}
        for channel in channels
    ]
    lock = threading.Lock()
    latencies: list[int] = []
    by_method: dict[str, list[int]] = {call.method: [] for call in calls}
    failures: Counter[str] = Counter()
    received = [0]
    started = [0]
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        rng = random.Random(n)
        stub = stubs[n % CHANNELS]
        mine: list[int] = []
        mine_by_method: dict[str, list[int]] = {call.method: [] for call in calls}
        size = 0
        while time.perf_counter() < deadline:
            with lock:
                if started[0] >= MAX_CALLS:
                    break
                started[0] += 1
            call = rng.choice(calls)
            request = rng.choice(call.requests)
            begun = time.perf_counter()
            try:
                response = stub[call.method](
                    request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS
                )
            except grpc.RpcError as error:
                with lock:
                    failures[f"{call.method} {error.code().name}"] += 1
                continue
            latency = int((time.perf_counter() - begun) * 1e6)
            mine.append(latency)
            mine_by_method[call.method].append(latency)
            size += len(response)
        with lock:
            latencies.extend(mine)
            for method, values in mine_by_method.items():
                by_method[method].extend(values)
            received[0] += size

    cpu = time.process_time()
    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for channel in channels:
        channel.close()
    succeeded = len(latencies)
    failed = sum(failures.values())
    latencies.sort()
    output = f"mixed: {succeeded} succeeded; failed: {dict(failures)}\n" + "\n".join(
        _summary(method, values) for method, values in by_method.items()
    )
    return loadgen.Result(
        seconds=elapsed,
        started=started[0],
        done=started[0],
        succeeded=succeeded,
        failed=failed,
        errored=0,
        timeout=0,
        status_classes=Counter({"2xx": succeeded, "3xx": 0, "4xx": 0, "5xx": 0}),
        data_bytes=received[0],
        latencies_us=latencies,
        logged_statuses=Counter({200: succeeded}),
        client_cpu_seconds=time.process_time() - cpu,
        output=output,
    )


def _summary(method: str, latencies_us: list[int]) -> str:
    """One RPC's share of the mix: its count and client-side p50/p99 (which call is slow)."""
    ordered = sorted(latencies_us)
    if not ordered:
        return f"  {method}: 0 calls"
    p50, p99 = (loadgen.percentile_ms(ordered, q) for q in (0.5, 0.99))
    return f"  {method}: {len(ordered)} calls, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
