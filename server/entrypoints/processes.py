"""Child processes that end with their parent, whatever ends it (SIGKILL included).

Run as a program, it is the first step of such a child: `python -m server.entrypoints.processes
PARENT_PID COMMAND [ARG...]` asks for SIGTERM when PARENT_PID dies, then becomes COMMAND
(exec, same process). gateway/launcher.py starts Envoy and experiments-server so, rather than
with subprocess's preexec_fn, which Python documents as unsafe in a process with threads
(grpcio's among them).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def stop_with_parent(parent: int) -> None:
    """Asks the kernel for SIGTERM when the parent process dies (Linux PR_SET_PDEATHSIG).

    Runs in the child; `parent` is the pid it expects as its parent: if that one died already,
    before the request, the child ends at once. SIGTERM, so a server child still drains.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def main(argv: list[str]) -> None:
    """PARENT_PID COMMAND [ARG...]: stop_with_parent(PARENT_PID), then exec COMMAND. The
    request survives exec (it is cleared only for set-user-ID programs)."""
    if len(argv) < 2 or not argv[0].isdigit():
        raise SystemExit(
            "usage: python -m server.entrypoints.processes PARENT_PID COMMAND [ARG...]"
        )
    stop_with_parent(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
