"""`make run`'s supervisor (gateway/run.py): killed with any signal it leaves nothing behind,
the next run serves, and a busy HTTP port is one line naming EXPERIMENTS_HTTP_PORT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import launcher
from tests.e2e.rest import HTTP_1_1, RestClient
from tests.ports import alive, unused_port

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Press Ctrl-C to stop."
TIMEOUT = 60.0


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


class MakeRun:
    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "make-run.log"
        self.http_port = unused_port()
        self.env = {
            **os.environ,
            "EXPERIMENTS_DATABASE_URL": f"sqlite:///{workdir / 'experiments.sqlite3'}",
            "EXPERIMENTS_GRPC_PORT": str(unused_port()),
            "EXPERIMENTS_HTTP_PORT": str(self.http_port),
            "EXPERIMENTS_WORKERS": "2",
        }

    def start(self) -> subprocess.Popen[str]:
        with self.log.open("w") as output:
            return subprocess.Popen(
                # As `make run` starts it.
                [sys.executable, "-m", "gateway.run"],
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def wait_ready(self, process: subprocess.Popen[str]) -> None:
        launcher.poll(
            lambda: True if READY_LINE in self.log.read_text() else None,
            what="make run",
            process=process,
            timeout=TIMEOUT,
            log=self.log,
        )


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    yield MakeRun(tmp_path)


def _stopped_by(run: subprocess.Popen[str], signum: signal.Signals) -> None:
    """Sends `signum` to a ready `make run`; asserts that it and every process it started end."""
    children = _descendants(run.pid)
    assert len(children) >= 4, (signum.name, children)  # the server, its 2 workers, Envoy

    run.send_signal(signum)
    run.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while any(alive(pid) for pid in children):
        left = [pid for pid in children if alive(pid)]
        assert time.monotonic() < deadline, f"{signum.name} left {left} behind"
        time.sleep(launcher.POLL_INTERVAL)


def test_killing_the_supervisor_leaves_no_orphan_and_the_next_run_serves(
    make_run: MakeRun,
) -> None:
    # One run after another, each stopped by the next signal: each run is the "next run" of the
    # one before, so the ports that run left behind are taken again (a run costs some 5 s of CPU).
    run = make_run.start()
    make_run.wait_ready(run)
    for signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP):
        _stopped_by(run, signum)

        run = make_run.start()
        try:
            make_run.wait_ready(run)
            rest = RestClient(f"http://127.0.0.1:{make_run.http_port}", HTTP_1_1)
            status = rest.get("/api/v5/orgs/x/experiments").status
            assert status == 401, f"after {signum.name}: {status}"  # served, by the server
        except BaseException:
            run.kill()
            raise
    run.terminate()
    assert run.wait(TIMEOUT) == 0


def test_a_busy_http_port_is_one_line_naming_the_setting(make_run: MakeRun) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", make_run.http_port))
        holder.listen()
        process = make_run.start()
        assert process.wait(TIMEOUT) == 1
        children = _descendants(process.pid)

    last = make_run.log.read_text().splitlines()[-1]
    assert last.startswith("make run: the HTTP port 127.0.0.1:")
    assert "EXPERIMENTS_HTTP_PORT" in last
    assert children == set()
