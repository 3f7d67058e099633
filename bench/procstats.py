"""CPU time and memory of running processes, read from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may contain spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far; vanished ones count 0."""
    ticks = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        # stat(5): utime and stime are fields 14 and 15; fields[0] here is field 3 (state).
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS_PER_SECOND


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy since boot (/proc/stat: all but idle
    and iowait), so that a phase shows whether the machine itself was the limit."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    ticks = [int(value) for value in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS_PER_SECOND


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def peak_rss_mib(pid: int) -> float:
    return status_kib(pid, "VmHWM") / 1024


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def children(pid: int) -> list[int]:
    """Direct children of pid, from the ppid field of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return sorted(found)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        kids = children(pending.pop())
        found.extend(kids)
        pending.extend(kids)
    return found


def named(command: str) -> list[int]:
    """Every process whose command name (/proc/<pid>/comm) is `command`, e.g. postgres."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def spawned_workers(pid: int) -> list[int]:
    """The multiprocessing 'spawn' workers under pid (not its resource tracker)."""
    return [child for child in descendants(pid) if "spawn_main" in cmdline(child)]


@dataclass(frozen=True)
class ProcessGroup:
    """Processes measured together, e.g. the server's parent and its workers."""

    name: str
    pids: tuple[int, ...]

    def cpu_seconds(self) -> float:
        return cpu_seconds(list(self.pids))

    def peak_rss_mib(self) -> list[float]:
        return [peak_rss_mib(pid) for pid in self.pids]
