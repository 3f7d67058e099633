"""CPU time, memory and connections of running processes, through psutil."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes have used so far; vanished ones count 0."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy since boot (all but idle and iowait),
    so that a phase shows whether the machine itself was the limit."""
    times = psutil.cpu_times()
    # guest time is already counted in user time
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(f"VmHWM not in /proc/{pid}/status")


def named(command: str) -> list[int]:
    """Every process whose command name is `command`, e.g. postgres."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == command]


def spawned_workers(pid: int) -> list[int]:
    """The multiprocessing 'spawn' workers under pid (not its resource tracker)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return sorted(found)


def connections_per_worker(workers: tuple[int, ...], port: int) -> list[int]:
    """Established TCP connections to `port` held by each worker process.

    SO_REUSEPORT hands each new connection to one listening process by a hash of its
    addresses, so a load of few connections can leave a worker idle; this shows it.
    """
    return [
        sum(
            1
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )
        for pid in workers
    ]
