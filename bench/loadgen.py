"""Runs h2load for a fixed duration and reads back its counts and per-request latencies.

h2load speaks plain HTTP/2 (or HTTP/1.1 with --h1); a unary gRPC call is an HTTP/2 POST
with `content-type: application/grpc`, `te: trailers` and a body of one length-prefixed
message, which h2load sends from a file (-d). h2load counts every HTTP 200 as a success
and never looks at grpc-status, so callers verify the responses on their own (run.py).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass(frozen=True)
class Load:
    """What to send: the same request, over and over, with a fixed number in flight."""

    urls: tuple[str, ...]
    headers: tuple[str, ...] = ()
    body: bytes | None = None  # a POST body; None sends GETs
    clients: int = 4  # connections
    streams: int = 8  # concurrent requests per connection (HTTP/2)
    http1: bool = False

    @property
    def in_flight(self) -> int:
        return self.clients * (1 if self.http1 else self.streams)


@dataclass
class Result:
    seconds: float
    started: int
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_classes: dict[str, int]
    data_bytes: int
    latencies_us: list[int] = field(repr=False)
    logged_statuses: Counter[int]
    client_cpu_seconds: float
    output: str = field(repr=False)

    @property
    def rps(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile of the logged request times, in milliseconds."""
        return percentile_ms(self.latencies_us, q)


def percentile_ms(sorted_latencies_us: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted request times in microseconds, in milliseconds."""
    if not sorted_latencies_us:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_latencies_us)))
    return sorted_latencies_us[rank - 1] / 1000


class H2loadError(RuntimeError):
    pass


def run(load: Load, seconds: float, workdir: Path, name: str) -> Result:
    """Runs h2load against load.urls for `seconds` (one thread) and parses what it reports.

    Per-request latencies come from h2load's --log-file (start, HTTP status, microseconds
    until the end of the response), since its summary has only min/max/mean/sd.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = workdir / f"{name}.h2load.tsv"
    command = [
        "h2load",
        "--threads=1",
        f"--clients={load.clients}",
        f"--max-concurrent-streams={1 if load.http1 else load.streams}",
        f"--duration={seconds:g}",
        f"--log-file={log_file}",
    ]
    if load.http1:
        command.append("--h1")
    for header in load.headers:
        command += ["-H", header]
    if load.body is not None:
        body_file = workdir / f"{name}.body"
        body_file.write_bytes(load.body)
        command.append(f"--data={body_file}")
    command += list(load.urls)
    output_file = workdir / f"{name}.h2load.txt"
    with output_file.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        # wait4 rather than wait: the CPU h2load itself used shares the machine with the server.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    text = output_file.read_text()
    if process.returncode != 0:
        raise H2loadError(f"h2load exited with {process.returncode}:\n{text}")
    return _parse(text, log_file, usage.ru_utime + usage.ru_stime)


_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s),", re.M)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_TRAFFIC = re.compile(r"^traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?\((\d+)\) data", re.M)
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _parse(text: str, log_file: Path, client_cpu: float) -> Result:
    finished, requests, status, traffic = (
        pattern.search(text) for pattern in (_FINISHED, _REQUESTS, _STATUS, _TRAFFIC)
    )
    if not (finished and requests and status and traffic):
        raise H2loadError(f"unexpected h2load output:\n{text}")
    _total, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    latencies: list[int] = []
    statuses: Counter[int] = Counter()
    with log_file.open() as rows:
        for row in rows:
            _start, code, micros = row.split("\t")[:3]
            statuses[int(code)] += 1
            if code.startswith("2"):
                latencies.append(int(micros))
    latencies.sort()
    return Result(
        seconds=float(finished[1]) * _UNIT_SECONDS[finished[2]],
        started=started,
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_classes=dict(
            zip(("2xx", "3xx", "4xx", "5xx"), map(int, status.groups()), strict=True)
        ),
        data_bytes=int(traffic[3]),
        latencies_us=latencies,
        logged_statuses=statuses,
        client_cpu_seconds=client_cpu,
        output=text,
    )
