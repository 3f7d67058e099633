"""The write RPCs' own work alone: what the Create and Update targets are read against.

The service's use cases (server.service_layer.experiments) are called in this process, in a
loop on one thread, with the write phases' own requests: the request parsed and translated,
the key (from the cache), the rules, the rendering, the transaction and its commit, the
response's bytes; everything a server of any kind would do for these calls. Left out: gRPC,
the interceptor (deadline, admission, the log line) and the servicer's headers. The process's
CPU time per call (every thread: the feed follower's read after each write, the WAL
checkpointer) bounds what any server around this work can serve on the machine: at most
`workers / CPU per call` calls per second, with every worker busy on them alone, and less on
SQLite, whose one writer takes the writes one at a time (bench/README.md, step 7 of
"What one run does").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from experiments.v5 import experiments_pb2 as pb

from bench import seed
from bench.phases import published_experiment
from server.config import Settings
from server.entrypoints.grpc_server import build_server
from server.entrypoints.translate import experiment_input

# Calls before the measured ones (caches, the pools' connections), then measured.
WARMUP_CALLS: Final = 30
CALLS: Final = 300


@dataclass(frozen=True)
class WriteFloor:
    key: str  # the phase whose target is read against it: grpc-create, grpc-update
    calls: int
    cpu_seconds: float

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1e6

    def most_rps(self, workers: int) -> float:
        """The most calls per second `workers` processes could serve doing this work alone."""
        return workers * self.calls / self.cpu_seconds


def measure(database_url: str, world: seed.World, calls: int = CALLS) -> list[WriteFloor]:
    """Create's and Update's work alone on `database_url` (seeded with `world`), with the
    bench's requests: Update PUTs the Update phase's body, Create adds `calls` experiments."""
    org = str(world.organization_id)
    create = pb.CreateExperimentRequest(
        organization_id=org, experiment=published_experiment(world, "Benchmark create")
    ).SerializeToString()
    update = pb.UpdateExperimentRequest(
        organization_id=org,
        experiment_id=str(world.update_experiment_id),
        experiment=published_experiment(world, "Benchmark update"),
    ).SerializeToString()
    running = build_server(Settings(database_url=database_url, grpc_port=0, workers=1))
    service = running.service
    try:

        def create_call() -> bytes:
            request = pb.CreateExperimentRequest.FromString(create)
            return service.create(
                world.api_key, request.organization_id, experiment_input(request.experiment)
            ).message

        def update_call() -> bytes:
            request = pb.UpdateExperimentRequest.FromString(update)
            return service.update(
                world.api_key,
                request.organization_id,
                request.experiment_id,
                experiment_input(request.experiment),
            ).message

        return [
            _timed("grpc-create", create_call, calls),
            _timed("grpc-update", update_call, calls),
        ]
    finally:
        running.stop(grace=0)


def _timed(key: str, call: Callable[[], bytes], calls: int) -> WriteFloor:
    for _ in range(WARMUP_CALLS):
        call()
    cpu = time.process_time()
    for _ in range(calls):
        call()
    return WriteFloor(key, calls, time.process_time() - cpu)
