"""The one logging setup of every command: a line per record on stderr, `experiments.*` names.

Each module logs to `experiments.<what>` (experiments.server, experiments.rpc,
experiments.database, experiments.schema, experiments.admin), so one logger name filters
the service's own lines from its libraries'.

Lines are written by a thread of their own (_BackgroundStream): a call that logs its one
line only hands the record over, and the writer formats and writes what came, in order, at
most WRITE_INTERVAL_SECONDS later (WARNING and above at once, with everything before them).
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
import traceback
from typing import Any, Final, TextIO

# How long an INFO line may wait before it is written. A process killed with SIGKILL loses
# at most the lines of this last interval; a process that exits or stops gracefully, none.
WRITE_INTERVAL_SECONDS: Final = 0.05

# In place of an exception's message in the log: it may quote request values.
WITHHELD = "(message not logged: it may quote request values)"


class _Formatter(logging.Formatter):
    """The standard format, with the date rendered once per second rather than per line, and
    tracebacks without exception messages.

    One line per RPC at thousands of RPCs per second made strftime a visible cost. An
    exception's message may quote what a client sent (a database error's DETAIL line, a
    parser's complaint), so a logged traceback keeps the frames and exception types only.
    """

    # The second last rendered and its text, swapped as one: threads format concurrently, and
    # two separate attributes let a thread pair one second's milliseconds with another's text.
    _cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
            self._cached = cached
        return f"{cached[1]},{int(record.msecs):03d}"

    def formatException(self, ei: Any) -> str:
        chain: list[BaseException] = []
        error: BaseException | None = ei[1]
        while error is not None and error not in chain:
            chain.append(error)
            error = error.__cause__ or error.__context__
        lines: list[str] = []
        for error in reversed(chain):
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(error.__traceback__))
            kind = type(error)
            lines.append(f"{kind.__module__}.{kind.__qualname__}: {WITHHELD}\n")
        return "".join(lines).rstrip("\n")


class _GrpcRequestValues(logging.Filter):
    """grpcio's own records, without the request values some of them quote.

    grpcio logs a header value that is not UTF-8 whole, API keys included, at ERROR with a
    traceback ("Invalid encoding on b'Token ...'"): that record is dropped, and the interceptor
    logs one line naming the header instead (it knows the method and the header's name, grpcio
    knows neither). Its "Exception calling application: <text>" and the like keep their first
    words only, as our tracebacks do (_Formatter).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("grpc"):
            return True
        if record.msg == "Invalid encoding on %s":
            return False
        if isinstance(record.msg, str) and (record.args or record.exc_info):
            head, colon, _ = record.msg.partition(":")
            record.msg = f"{head}: {WITHHELD}" if colon else record.msg
            record.args = ()
        return True


class _BackgroundStream(logging.Handler):
    """A stream handler whose records are formatted and written by a thread of its own.

    Why: under load a worker logs thousands of lines a second from many threads. Written by
    each call, every line took the handler's lock and a write (a system call, during which
    grpcio's threads take the GIL from one another): one worker served a trivial RPC about a
    fifth slower with its line than without (bench/README.md, "Where the per-call cost goes").
    Here a call only appends its record to a deque (atomic, no lock); the writer drains it
    every WRITE_INTERVAL_SECONDS into one write. Records of WARNING and above are written at
    once by the thread that logs them, after every record before them, so errors are never
    late and the order of lines is the order of records.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._records: collections.deque[logging.LogRecord] = collections.deque()
        self._writing = threading.Lock()
        writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle takes the handler's lock around emit(): not needed to append.
        if not self.filter(record):
            return False
        self._records.append(record)
        if record.levelno >= logging.WARNING:
            self.flush()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)

    def flush(self) -> None:
        """Writes every record handed over so far (also at exit: logging.shutdown)."""
        with self._writing:
            lines: list[str] = []
            records = self._records
            while records:
                record = records.popleft()
                try:
                    lines.append(self.format(record))
                except Exception:
                    self.handleError(record)
            if not lines:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:  # a closed or broken stream: reported as StreamHandler does
                self.handleError(record)

    def _write_forever(self) -> None:
        while True:
            time.sleep(WRITE_INTERVAL_SECONDS)
            if self._records:
                self.flush()


def configure_logging(level: str) -> None:
    """As logging.basicConfig: nothing when the root logger has handlers already."""
    if logging.getLogger().handlers:
        return
    handler = _BackgroundStream(sys.stderr)
    handler.setFormatter(
        _Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    )
    handler.addFilter(_GrpcRequestValues())
    logging.basicConfig(level=level, handlers=[handler])
