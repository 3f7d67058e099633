"""Child processes that end with their parent, whatever ends it (SIGKILL included)."""

from __future__ import annotations

import ctypes
import os
import signal

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
