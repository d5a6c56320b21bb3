"""Temporary folders that a later process removes when the one that made them was killed.

Xvfb, chromium, the adb server and the virtual phone each get a folder in the system's temporary
folder. A process killed with SIGKILL (the OOM killer, a bench worker's machine going down)
removes none of them; its child processes die with it (``DIES_WITH_PARENT``), but every such
kill left its folders behind.

So each folder ``<prefix>XXXX`` has an owner lock beside it, ``<prefix>XXXX.lock``, which its
process holds (``flock``) from before the folder exists until after it is removed. The kernel
drops the lock when the process dies, however it dies. Making a folder first sweeps the folders
of its prefix whose lock nobody holds. A folder is removed only by a process that holds its lock,
so a live owner's folder is never removed. Folders made without a lock (by older versions) are
left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import weakref
from pathlib import Path

LOCK_SUFFIX = ".lock"


def sweep(prefix: str, parent: str | None = None) -> None:
    """Remove the folders named ``prefix``... in ``parent`` (the temporary folder) whose owner
    lock nobody holds, with their locks."""
    parent = parent or tempfile.gettempdir()
    for lock in Path(parent).glob(f"{prefix}*{LOCK_SUFFIX}"):
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # gone already, another user's, or not a plain file
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its owner is alive
            os.close(fd)
            continue
        if _still_at(fd, str(lock)):  # not removed by its owner or another sweep meanwhile
            _remove(str(lock)[: -len(LOCK_SUFFIX)], fd)
        else:
            os.close(fd)


def _still_at(fd: int, path: str) -> bool:
    """Whether ``path`` is still the file open as ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _remove(folder: str, fd: int) -> None:
    """Remove ``folder``, then its lock, then let the lock go (``fd``)."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(folder + LOCK_SUFFIX)
    os.close(fd)


class TempFolder:
    """A fresh folder ``<prefix>XXXX`` in the temporary folder (mode 0700), owned by this process
    until ``cleanup`` (or exit) removes it; see the module's docstring. ``name`` is its path."""

    def __init__(self, prefix: str) -> None:
        sweep(prefix)
        while True:
            fd, lock = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process's sweep may have taken the lock before this one did (and removed
            # the lock file): the folder would have none. Locked and still in place, no sweep
            # can take it until this process lets it go.
            if not _still_at(fd, lock):
                os.close(fd)
                continue
            name = lock[: -len(LOCK_SUFFIX)]
            try:
                os.mkdir(name, 0o700)
                break
            except FileExistsError:  # an older folder of the same name, lock or not
                os.unlink(lock)
                os.close(fd)
        self.name = name
        self._finalizer = weakref.finalize(self, _remove, name, fd)

    def cleanup(self) -> None:
        """Remove the folder (again, should something have written into it since)."""
        if self._finalizer.alive:
            self._finalizer()
        else:
            shutil.rmtree(self.name, ignore_errors=True)

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
