"""The one logging setup of every command: a line per record on stderr, `experiments.*` names.

Each module logs to `experiments.<what>` (experiments.server, experiments.rpc,
experiments.database, experiments.schema, experiments.admin), so one logger name filters
the service's own lines from its libraries'.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from typing import Any

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


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")
    )
    handler.addFilter(_GrpcRequestValues())
    logging.basicConfig(level=level, handlers=[handler])
