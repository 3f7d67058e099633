"""Where a worker's time goes under load: py-spy samples, summarized by function and package.

py-spy samples the Python stacks of the server's processes from outside (no code change,
no restart), here only the thread holding the GIL (--gil): with one core per process that is
the Python work that limits throughput. Time spent in C without the GIL (grpc's core, the
SQLite engine, socket I/O) shows as the Python frame that called it, or not at all.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

_PROCESS_FRAMES = re.compile(r'^(?:process \d+:"[^"]*";)+')
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def record(pid: int, seconds: float, output: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    """Starts sampling pid and its child processes for `seconds` into a collapsed-stack file."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            f"--pid={pid}",
            "--subprocesses",
            "--gil",
            "--nonblocking",  # never pauses the server; a few samples come out torn
            f"--rate={rate}",
            f"--duration={max(1, round(seconds))}",
            "--format=raw",
            f"--output={output}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _package(file: str) -> str:
    """The package a source file belongs to: grpc, sqlalchemy, server.adapters, logging, ..."""
    if not file.endswith(".py"):
        return file if file.startswith("<") else "(torn sample)"
    path = file.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    parts = [p for p in path.split("/") if p not in ("", "..", ".")]
    if "server" in parts:
        parts = parts[parts.index("server") :]
        return ".".join(parts[:2]).removesuffix(".py")
    if parts and parts[0] == "google" and len(parts) > 1:
        return f"google.{parts[1]}"
    return parts[0].removesuffix(".py") if parts else file


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive time by function, and self time by package, in % of samples."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for frame in _PROCESS_FRAMES.sub("", stack).split(";"):
            match = _FRAME.match(frame)
            if match:
                frames.append((match["function"], match["file"]))
        if not frames:
            continue
        total += count
        function, file = frames[-1]
        self_time[f"{function} ({file})"] += count
        packages[_package(file)] += count
        for name in {f"{f} ({p})" for f, p in frames}:
            inclusive[name] += count
    if not total:
        return "no samples (is py-spy allowed to ptrace the server? run as root)"

    def percent(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{total} samples of the thread holding the GIL, all workers together", ""]
    lines.append("Self time by package (the innermost Python frame's file):")
    lines += [f"  {percent(n)}  {name}" for name, n in packages.most_common(top)]
    lines += ["", "Self time by function:"]
    lines += [f"  {percent(n)}  {name}" for name, n in self_time.most_common(top)]
    lines += ["", "Inclusive time by function (frames under 95%, i.e. below the thread's root):"]
    shown = [(name, n) for name, n in inclusive.most_common() if n < 0.95 * total]
    lines += [f"  {percent(n)}  {name}" for name, n in shown[: top + 15]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
