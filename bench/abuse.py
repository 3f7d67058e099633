"""Abusive load beside a well-behaved client: what the issue's probes sent, bounded in time.

While abusive clients send the largest requests the limits let through (gRPC creates whose
treatment has as many keys as fit, REST bodies of as many keys as fit) and requests far over
the gRPC limit, a well-behaved client reads one experiment over gRPC and REST, one call after
another. The run reports whether the well-behaved client was served (and how often within a
second), whether the gateway's health checks failed or took the upstream for unhealthy,
whether it answered "no healthy upstream", and the workers' peak memory.

Used by `make bench` (the abuse phase, bench/run.py) and by the e2e test
tests/e2e/test_availability.py, which asserts the robust parts of the same figures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from experiments.v5 import experiments_pb2 as pb

from bench import procstats
from gateway.launcher import UPSTREAM_CLUSTER, Envoy
from server.domain import limits

SERVICE = "/experiments.v5.ExperimentService/"
# Far over the gRPC limit: what the probes sent before the limit came down (4 MiB).
OVERSIZED_BYTES = 4 * limits.MIB
GRPC_ABUSERS = 8
REST_ABUSERS = 8
OVERSIZED_ABUSERS = 4
# The well-behaved client: gRPC and REST readers, each one call after another.
GRPC_READERS = 2
REST_READERS = 2
WITHIN_SECONDS = 1.0
# What the well-behaved client waits at most: generous, so that a loaded machine (a CI box
# running other tests) slows it down without failing it; the within-a-second share says how
# fast it was.
READ_DEADLINE_SECONDS = 10.0
ABUSIVE_DEADLINE_SECONDS = 10.0
# How often the gateway's view of the upstream's health is sampled: well within the time a
# host stays unhealthy before a check passes again (Envoy's unhealthy_interval, 0.5 s).
HEALTH_SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Target:
    grpc_port: int
    envoy: Envoy
    api_key: str
    organization_id: str
    experiment_id: str  # what the well-behaved client reads
    workers: tuple[int, ...]  # the server's worker processes, whose memory is measured


@dataclass
class Tally:
    """Outcomes of one kind of client: statuses and the latencies of successes."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, seconds: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == "OK":
                self.latencies.append(seconds)

    @property
    def calls(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses["OK"]

    @property
    def within(self) -> int:
        return sum(1 for seconds in self.latencies if seconds <= WITHIN_SECONDS)


@dataclass
class Report:
    seconds: float
    good: Tally
    abusive: Tally
    health_check_failures: int
    unhealthy_spells: int  # times the gateway took the upstream for unhealthy
    no_healthy_upstream: int
    peak_rss_mb: list[float]

    @property
    def good_share(self) -> float:
        return self.good.ok / self.good.calls if self.good.calls else 0.0

    @property
    def good_within_share(self) -> float:
        return self.good.within / self.good.calls if self.good.calls else 0.0

    def lines(self) -> list[str]:
        return [
            f"well-behaved reads: {self.good.ok:,} of {self.good.calls:,} OK "
            f"({100 * self.good_share:.2f}%), {100 * self.good_within_share:.2f}% within "
            f"{WITHIN_SECONDS:g} s; failures {dict(self.good.statuses - Counter(OK=self.good.ok))}",
            f"abusive calls: {self.abusive.calls:,}, answered {dict(self.abusive.statuses)}",
            f"gateway: {self.health_check_failures} failed health checks, upstream unhealthy "
            f"{self.unhealthy_spells} times, {self.no_healthy_upstream} 'no healthy upstream'",
            "peak RSS per worker: " + ", ".join(f"{mb:.0f} MB" for mb in self.peak_rss_mb),
        ]


def grpc_create_of_many_keys(organization_id: str, size: int = limits.MAX_REQUEST_BYTES) -> bytes:
    """A create whose treatment has as many keys as fit in `size` bytes."""
    request = pb.CreateExperimentRequest(
        organization_id=organization_id, experiment=pb.Experiment(is_draft=True, name="abuse")
    )
    treatment = request.experiment.groups.add(name="A").treatment
    per_key = 20  # "k123456" -> 1.0 as a map entry
    treatment.update({f"k{n:06d}": 1.0 for n in range(size // per_key)})
    while request.ByteSize() > size:
        keys = list(treatment.keys())
        for key in keys[-max(1, (request.ByteSize() - size) // per_key + 1) :]:
            del treatment[key]
    return request.SerializeToString()


def rest_body_of_many_keys(size: int = limits.MAX_REQUEST_BODY_BYTES) -> bytes:
    """A REST create body of `size` bytes at most whose treatment has as many keys as fit."""
    head = b'{"is_draft": true, "name": "abuse", "groups": [{"name": "A", "treatment": {'
    tail = b"}}]}"
    entries, used, n = [], len(head) + len(tail), 0
    while True:
        entry = f'"k{n:06d}": 1'.encode()
        if used + len(entry) + 1 > size:
            break
        entries.append(entry)
        used += len(entry) + 1
        n += 1
    return head + b",".join(entries) + tail


def _grpc_status(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def _gateway_stats(envoy: Envoy) -> dict[str, int]:
    page = envoy.admin_get(f"/stats?format=json&filter=^cluster\\.{UPSTREAM_CLUSTER}\\.")
    if page is None:
        return {}
    return {
        s["name"].removeprefix(f"cluster.{UPSTREAM_CLUSTER}."): int(s.get("value", 0))
        for s in json.loads(page)["stats"]
        if "value" in s
    }


def _watch_health(envoy: Envoy, stop: threading.Event, spells: list[int]) -> None:
    """Counts the times the upstream's healthy membership drops to none (Envoy's counters
    have no such count: membership_change counts hosts added or removed)."""
    healthy = True
    while not stop.wait(HEALTH_SAMPLE_SECONDS):
        now = _gateway_stats(envoy).get("membership_healthy", 1) > 0
        if healthy and not now:
            spells[0] += 1
        healthy = now


def run(target: Target, seconds: float) -> Report:
    """Runs the abusive clients and the well-behaved one together for `seconds`."""
    stop = threading.Event()
    good, abusive = Tally(), Tally()
    metadata = (("authorization", f"Token {target.api_key}"),)
    address = f"127.0.0.1:{target.grpc_port}"
    many_keys = grpc_create_of_many_keys(target.organization_id)
    oversized = grpc_create_of_many_keys(target.organization_id, OVERSIZED_BYTES)
    body = rest_body_of_many_keys()
    collection = f"/api/v5/orgs/{target.organization_id}/experiments"
    rest_headers = {"Authorization": f"Token {target.api_key}"}

    def channel() -> grpc.Channel:
        # A connection each (SO_REUSEPORT spreads connections over the workers), and a client
        # limit far above what is sent, so that the server's limits are what is measured.
        return grpc.insecure_channel(
            address,
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_send_message_length", 2 * OVERSIZED_BYTES),
            ],
        )

    def grpc_loop(tally: Tally, method: str, request: bytes, deadline: float) -> Callable[[], None]:
        def loop() -> None:
            with channel() as opened:
                call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = opened.unary_unary(
                    SERVICE + method
                )
                while not stop.is_set():
                    started = time.perf_counter()
                    status = _grpc_status(
                        lambda: call(request, metadata=metadata, timeout=deadline)
                    )
                    tally.add(status, time.perf_counter() - started)

        return loop

    def rest_loop(
        tally: Tally, method: str, path: str, payload: bytes | None, timeout: float
    ) -> Callable[[], None]:
        def loop() -> None:
            connection: http.client.HTTPConnection | None = None
            headers = dict(rest_headers)
            if payload is not None:
                headers["Content-Type"] = "application/json"
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection(
                            "127.0.0.1", target.envoy.http_port, timeout=timeout
                        )
                    connection.request(method, path, body=payload, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    status = "OK" if response.status == 200 else f"HTTP {response.status}"
                    if response.getheader("connection", "").lower() == "close":
                        connection.close()
                        connection = None
                except (OSError, http.client.HTTPException) as error:
                    status = type(error).__name__
                    if connection is not None:
                        connection.close()
                    connection = None
                tally.add(status, time.perf_counter() - started)
            if connection is not None:
                connection.close()

        return loop

    get = pb.GetExperimentRequest(
        organization_id=target.organization_id, experiment_id=target.experiment_id
    ).SerializeToString()
    loops = (
        [grpc_loop(abusive, "CreateExperiment", many_keys, ABUSIVE_DEADLINE_SECONDS)] * GRPC_ABUSERS
        + [grpc_loop(abusive, "CreateExperiment", oversized, ABUSIVE_DEADLINE_SECONDS)]
        * OVERSIZED_ABUSERS
        + [rest_loop(abusive, "POST", collection, body, ABUSIVE_DEADLINE_SECONDS)] * REST_ABUSERS
        + [grpc_loop(good, "GetExperiment", get, READ_DEADLINE_SECONDS)] * GRPC_READERS
        + [
            rest_loop(
                good, "GET", f"{collection}/{target.experiment_id}", None, READ_DEADLINE_SECONDS
            )
        ]
        * REST_READERS
    )
    before = _gateway_stats(target.envoy)
    spells = [0]
    loops.append(lambda: _watch_health(target.envoy, stop, spells))
    threads = [threading.Thread(target=loop, daemon=True) for loop in loops]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    after = _gateway_stats(target.envoy)

    def grew(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    return Report(
        seconds=elapsed,
        good=good,
        abusive=abusive,
        health_check_failures=grew("health_check.failure"),
        unhealthy_spells=spells[0],
        no_healthy_upstream=grew("upstream_cx_none_healthy"),
        peak_rss_mb=[procstats.peak_rss_mb(pid) for pid in target.workers],
    )
