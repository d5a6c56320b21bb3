"""One thread for all of a model's torch work.

torch's CPU ops run on OpenMP (libgomp), which gives every thread that starts a parallel region a
team of threads of its own. Once the process holds more of those threads than it has CPUs,
libgomp's threads stop spinning between regions and sleep, and each of the hundreds of regions
of a decode step waits for its team to wake up. On the 2-core box of docs/benchmarks.md a request
took 3x as long on a server's model thread as on the main thread that had loaded the model (both
threads then had teams). So every ``LocalBackend`` of a process loads its model and runs its
calls on the process's one torch thread (``torch_thread``), whichever thread calls it, and that
is the only thread that starts parallel regions. (Two backends on one thread each, as a
benchmark that compares them holds, would make two teams again.)
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from typing import Callable, TypeVar

T = TypeVar("T")


class OneThread:
    """Runs the callables it is given, one at a time, on one daemon thread (a daemon: an
    interrupted caller does not wait for the call under way at exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._busy = False
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a call is under way (one an interrupted caller stopped waiting for)."""
        return self._busy

    def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args, **kwargs)`` on the thread; its result, or its exception raised here."""
        if threading.current_thread() is self._thread:  # a call from within a call
            return fn(*args, **kwargs)
        future: Future = Future()
        self._jobs.put((lambda: fn(*args, **kwargs), future))
        return future.result()

    def close(self) -> None:
        """The thread ends after the calls queued before."""
        self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future = job
            self._busy = True
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - the caller gets it raised
                future.set_exception(exc)
            finally:
                self._busy = False


_shared: OneThread | None = None
_shared_lock = threading.Lock()


def torch_thread() -> OneThread:
    """The process's thread for models' torch work, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = OneThread("torch")
        return _shared


def torch_busy() -> bool:
    """Whether the torch thread is inside a call: the interpreter must not be torn down under
    it (libtorch's threads then abort the process, "terminate called without an active
    exception")."""
    return _shared is not None and _shared.busy


def _forget_in_child() -> None:
    global _shared
    _shared = None  # a forked child has no such thread: it starts its own on first use


os.register_at_fork(after_in_child=_forget_in_child)
