"""The benchmark's table, its targets with PASS/FAIL, and the machine it ran on."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.abuse import WITHIN_SECONDS
from bench.abuse import Report as AbuseReport
from bench.phases import Measurement
from bench.watchers import LAG_P99_MS, UNARY_RATIO
from bench.watchers import Figures as WatchFigures

if TYPE_CHECKING:
    from bench.write_floor import WriteFloor

# The targets (issue 10), as ratios to the echo ceiling of the same run.
GET_RATIO = 0.5
GET_P99_X_ECHO = 2.0  # gRPC Get p99 at most twice the echo's p99
LIST_RATIO = 0.25
REST_GET_RATIO = 0.35
REST_LIST_RATIO = 0.1
WRITE_RATIO_SQLITE = 0.15  # Create and Update
MIXED_P99_X_ECHO = 5.0
RSS_MB = 150.0
RSS_AT_EXPERIMENTS = 100_000
FLAT_P50 = 0.20  # Get and List p50 at the largest size within 20% of the smallest
# Issue 16: AssignVisitor over gRPC with 50 running experiments in the organization.
ASSIGN_RATIO = 0.6
ASSIGN_P99_X_ECHO = 2.0
# Issue 18, under abuse: the well-behaved client's Gets, and each worker's peak memory.
ABUSE_GOOD_SHARE = 0.99
ABUSE_RSS_MB = 300.0


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout
    return {
        "code": _revision(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sqlite": sqlite3.sqlite_version,
        "h2load": h2load.strip().removeprefix("h2load "),
    }


def _revision() -> str:
    """The commit measured, and whether the server or gateway had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return run.stdout.strip() if run.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "server", "gateway", "generated", "pyproject.toml")
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, pattern)


def table(measurements: Sequence[Measurement], echo_rps: float) -> str:
    header = (
        "phase",
        "RPS",
        "x echo",
        "p50 ms",
        "p99 ms",
        "server CPU us/req",
        "server cores",
        "Envoy CPU us/req",
        "DB CPU us/req",
        "client CPU",
        "busy cores (other)",
        "peak RSS/worker MB",
        "conns/worker",
        "verified",
    )
    rows = [header]
    for m in measurements:
        r = m.result
        rows.append(
            (
                m.phase.title,
                _fmt(m.rps, ",.0f"),
                _fmt(m.rps / echo_rps if echo_rps else None, ".2f"),
                _fmt(r.percentile_ms(0.50), ".2f"),
                _fmt(r.percentile_ms(0.99), ".2f"),
                _fmt(m.per_request_us(m.server_cpu_seconds), ",.0f"),
                _fmt(m.server_cores, ".2f"),
                _fmt(m.per_request_us(m.gateway_cpu_seconds), ",.0f"),
                _fmt(m.per_request_us(m.database_cpu_seconds), ",.0f"),
                f"{m.client_cpu_percent:.0f}%",
                f"{m.machine_cores:.2f} ({m.other_cores:.2f})",
                _fmt(max(m.peak_rss_mb, default=math.nan), ".0f"),
                "/".join(map(str, m.connections)) or "-",
                "OK" if m.verified else "FAILED",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join("-" * (w + 2) for w in widths[:1])
                + "|"
                + "|".join("-" * (w + 1) + ":" for w in widths[1:])
                + "|"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None: not measured in this run
    text: str
    value: str
    note: str = ""

    def line(self) -> str:
        status = "n/a " if self.passed is None else "PASS" if self.passed else "FAIL"
        note = f"  ({self.note})" if self.note else ""
        return f"  {status}  {self.text:<44} {self.value}{note}"


def _by_key(measurements: Sequence[Measurement]) -> dict[str, Measurement]:
    return {m.phase.key: m for m in measurements}


def _ratio(
    found: dict[str, Measurement], key: str, echo_rps: float, goal: float, text: str, note: str = ""
) -> Verdict:
    m = found.get(key)
    if m is None or not echo_rps:
        return Verdict(None, text, "not measured")
    ratio = m.rps / echo_rps
    return Verdict(ratio >= goal, text, f"{ratio:.2f}x", note)


def _floor_note(floor: Measurement | None, echo_rps: float, echo_p99: float) -> str:
    """What the call's own work alone served on the echo's server (bench/echo_server.py)."""
    if floor is None or not echo_rps:
        return ""
    p99 = floor.result.percentile_ms(0.99)
    return (
        f"its work alone on the echo's server: {floor.rps / echo_rps:.2f}x, "
        f"p99 {p99 / echo_p99:.1f}x the echo's"
    )


def _write_floor_note(
    floors: Sequence[WriteFloor], key: str, workers: int, echo_rps: float, note: str
) -> str:
    """What the write's own work alone allows (bench/write_floor.py), beside `note`."""
    floor = next((f for f in floors if f.key == key), None)
    if floor is None or not echo_rps:
        return note
    most = floor.most_rps(workers)
    alone = (
        f"its work alone: {floor.cpu_us_per_call:,.0f} us of CPU per call in-process, "
        f"so at most {most:,.0f} req/s on {workers} workers = {most / echo_rps:.2f}x"
    )
    return f"{note}; {alone}" if note else alone


def targets(
    measurements: Sequence[Measurement],
    echo_rps: float,
    backend: str,
    experiments: int,
    floors: Sequence[WriteFloor] = (),
    workers: int = 1,
) -> list[Verdict]:
    found = _by_key(measurements)
    echo = found.get("echo")
    echo_p99 = echo.result.percentile_ms(0.99) if echo is not None else math.nan

    def p99_within(key: str, times: float, text: str) -> Verdict:
        m = found.get(key)
        if m is None or math.isnan(echo_p99):
            return Verdict(None, text, "not measured")
        p99 = m.result.percentile_ms(0.99)
        value = f"{p99:.2f} ms = {p99 / echo_p99:.1f}x the echo's {echo_p99:.2f} ms"
        return Verdict(p99 <= times * echo_p99, text, value)

    writes_note = "" if backend == "sqlite" else f"the target is for SQLite; this run is {backend}"
    verdicts = [
        _ratio(found, "grpc-get", echo_rps, GET_RATIO, f"gRPC Get >= {GET_RATIO}x echo"),
        p99_within("grpc-get", GET_P99_X_ECHO, f"gRPC Get p99 <= {GET_P99_X_ECHO:g}x echo p99"),
        _ratio(found, "grpc-list", echo_rps, LIST_RATIO, f"gRPC List (25) >= {LIST_RATIO}x echo"),
        _ratio(found, "rest-get", echo_rps, REST_GET_RATIO, f"REST Get >= {REST_GET_RATIO}x echo"),
        _ratio(
            found,
            "rest-list",
            echo_rps,
            REST_LIST_RATIO,
            f"REST List (25) >= {REST_LIST_RATIO}x echo",
        ),
        _ratio(
            found,
            "grpc-create",
            echo_rps,
            WRITE_RATIO_SQLITE,
            f"gRPC Create >= {WRITE_RATIO_SQLITE}x echo (SQLite)",
            _write_floor_note(floors, "grpc-create", workers, echo_rps, writes_note),
        ),
        _ratio(
            found,
            "grpc-update",
            echo_rps,
            WRITE_RATIO_SQLITE,
            f"gRPC Update >= {WRITE_RATIO_SQLITE}x echo (SQLite)",
            _write_floor_note(floors, "grpc-update", workers, echo_rps, writes_note),
        ),
        p99_within("mixed", MIXED_P99_X_ECHO, f"mixed p99 <= {MIXED_P99_X_ECHO:g}x echo p99"),
        _ratio(
            found,
            "grpc-assign",
            echo_rps,
            ASSIGN_RATIO,
            f"gRPC Assign >= {ASSIGN_RATIO}x echo",
            _floor_note(found.get("assign-floor"), echo_rps, echo_p99),
        ),
        p99_within(
            "grpc-assign", ASSIGN_P99_X_ECHO, f"gRPC Assign p99 <= {ASSIGN_P99_X_ECHO:g}x echo p99"
        ),
    ]
    peak = max(
        (max(m.peak_rss_mb, default=0.0) for m in measurements if m.phase.method), default=0.0
    )
    if peak:
        note = ""
        if experiments < RSS_AT_EXPERIMENTS:
            note = f"at {experiments:,} experiments; the target is for {RSS_AT_EXPERIMENTS:,}"
        verdicts.append(
            Verdict(peak < RSS_MB, f"peak RSS per worker < {RSS_MB:g} MB", f"{peak:.0f} MB", note)
        )
    return verdicts


def abuse_targets(abused: AbuseReport) -> list[Verdict]:
    within = abused.good_within_share
    peak = max(abused.peak_rss_mb, default=0.0)
    return [
        Verdict(
            within >= ABUSE_GOOD_SHARE,
            f"abuse: reads OK within {WITHIN_SECONDS:g} s >= {ABUSE_GOOD_SHARE:.0%}",
            f"{within:.2%} of {abused.good.calls:,}",
        ),
        Verdict(
            abused.unhealthy_spells == 0 and abused.no_healthy_upstream == 0,
            "abuse: upstream never unhealthy",
            f"{abused.unhealthy_spells} times, {abused.no_healthy_upstream} 'no healthy "
            f"upstream', {abused.health_check_failures} failed checks",
        ),
        Verdict(
            peak < ABUSE_RSS_MB,
            f"abuse: peak RSS per worker < {ABUSE_RSS_MB:g} MB",
            f"{peak:.0f} MB",
        ),
    ]


def watch_targets(watched: WatchFigures) -> list[Verdict]:
    lag = watched.lag
    return [
        Verdict(
            watched.lag_met,
            f"watch lag p99 <= {LAG_P99_MS:g} ms at every watcher",
            f"p99 {lag.percentile(0.99):.0f} ms over {watched.plan.watchers:,} watches",
            f"{lag.missing} missing, {lag.duplicates} duplicated",
        ),
        Verdict(
            watched.ratio >= UNARY_RATIO,
            f"Get with the watches open >= {UNARY_RATIO:.0%} of without",
            f"{watched.ratio:.2f}x",
            f"{watched.with_watches.rps:,.0f} against {watched.without.rps:,.0f} req/s",
        ),
    ]


def flatness(by_size: Mapping[int, Sequence[Measurement]]) -> tuple[str, list[Verdict]]:
    """Get and List p50 (and the rest) per table size, and whether p50 stayed flat."""
    sizes = sorted(by_size)
    header = (
        "experiments",
        *(f"{rpc} {column}" for rpc in ("Get", "List") for column in ("RPS", "p50 ms", "p99 ms")),
        "peak RSS/worker MB",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for size in sizes:
        found = _by_key(by_size[size])
        get, page = found["grpc-get"], found["grpc-list"]
        rss = max(max(m.peak_rss_mb) for m in by_size[size] if m.phase.method)
        lines.append(
            f"| {size:,} | {get.rps:,.0f} | {get.result.percentile_ms(0.5):.2f} | "
            f"{get.result.percentile_ms(0.99):.2f} | {page.rps:,.0f} | "
            f"{page.result.percentile_ms(0.5):.2f} | {page.result.percentile_ms(0.99):.2f} | "
            f"{rss:.0f} |"
        )
    verdicts = []
    if len(sizes) >= 2:
        small, large = _by_key(by_size[sizes[0]]), _by_key(by_size[sizes[-1]])
        for key, name in (("grpc-get", "Get"), ("grpc-list", "List")):
            before = small[key].result.percentile_ms(0.5)
            after = large[key].result.percentile_ms(0.5)
            change = after / before - 1
            verdicts.append(
                Verdict(
                    abs(change) <= FLAT_P50,
                    f"{name} p50 at {sizes[-1]:,} within {FLAT_P50:.0%} of {sizes[0]:,}",
                    f"{before:.2f} -> {after:.2f} ms ({change:+.0%})",
                )
            )
        largest = by_size[sizes[-1]]
        peak = max(max(m.peak_rss_mb) for m in largest if m.phase.method)
        verdicts.append(
            Verdict(
                peak < RSS_MB if sizes[-1] >= RSS_AT_EXPERIMENTS else None,
                f"peak RSS per worker < {RSS_MB:g} MB",
                f"{peak:.0f} MB at {sizes[-1]:,}",
            )
        )
    return "\n".join(lines), verdicts


def problems(measurements: Sequence[Measurement]) -> list[str]:
    return [f"{m.phase.title}: {p}" for m in measurements for p in m.problems]
