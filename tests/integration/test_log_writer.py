"""The log's writer thread (server/entrypoints/logs.py): a call only hands its record over; the
lines still come out whole, in the order they were logged, INFO within the write interval,
WARNING and above at once, and nothing is lost when the process exits."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from server.entrypoints.logs import WRITE_INTERVAL_SECONDS, _BackgroundStream


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = _BackgroundStream(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"experiments.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def _until(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not written in time"
        time.sleep(0.005)


def test_an_info_line_is_written_by_the_writer_within_its_interval(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("rpc method=%s status=%s", "/a/B", "OK")
    _until(
        lambda: stream.getvalue() == "INFO rpc method=/a/B status=OK\n", 20 * WRITE_INTERVAL_SECONDS
    )


def test_a_warning_is_written_at_once_after_every_line_before_it(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    for n in range(1000):
        logger.info("line %d", n)
    logger.warning("the warning")
    # No wait: the warning's own call wrote it, and everything logged before it first.
    lines = stream.getvalue().splitlines()
    assert lines == [f"INFO line {n}" for n in range(1000)] + ["WARNING the warning"]


def test_lines_from_many_threads_are_whole_and_none_is_lost(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged

    def log_many(thread: int) -> None:
        for n in range(500):
            logger.info("thread %d line %d", thread, n)

    threads = [threading.Thread(target=log_many, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.handlers[0].flush()
    lines = stream.getvalue().splitlines()
    assert sorted(lines) == sorted(
        f"INFO thread {t} line {n}" for t in range(8) for n in range(500)
    )
    for t in range(8):  # each thread's lines in the order it logged them
        mine = [line for line in lines if line.startswith(f"INFO thread {t} ")]
        assert mine == [f"INFO thread {t} line {n}" for n in range(500)]


def test_a_process_that_exits_right_after_logging_loses_no_line() -> None:
    program = (
        "import logging\n"
        "from server.entrypoints.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "log = logging.getLogger('experiments.test')\n"
        "for n in range(2000):\n"
        "    log.info('line %d', n)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 2000
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(n) for n in range(2000)]
