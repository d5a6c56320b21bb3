"""Stopping the helper programs an env or a task starts (Xvfb, the desktop tasks' X programs)."""

from __future__ import annotations

import subprocess


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
