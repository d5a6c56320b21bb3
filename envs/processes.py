"""The helper programs an env or a task starts (Xvfb, the desktop tasks' X programs, a private
adb server): they die with the run, and stop when asked."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """In the forked child, before exec: ask the kernel for SIGKILL when the parent dies, so a
    run killed with SIGKILL (no cleanup runs) leaves none of its helpers behind. Linux counts
    the thread that started the child as its parent: start it from a thread that outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


#: ``Popen(..., preexec_fn=DIES_WITH_PARENT)`` for a helper program.
DIES_WITH_PARENT = _die_with_parent if sys.platform.startswith("linux") else None


def stop(process: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Ask ``process`` to end (SIGTERM), kill it if it has not within ``timeout_s``, reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
