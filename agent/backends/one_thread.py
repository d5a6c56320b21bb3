"""One thread for all of a model's torch work.

torch's CPU ops run on OpenMP (libgomp), which gives every thread that starts a parallel region a
team of threads of its own. Once the process holds more of those threads than it has CPUs,
libgomp's threads stop spinning between regions and sleep, and each of the hundreds of regions
of a decode step waits for its team to wake up. On the 2-core box of docs/benchmarks.md a request
took 3x as long on a server's model thread as on the main thread that had loaded the model (both
threads then had teams). So a ``LocalBackend`` loads its model and runs every call on a thread
of its own, the only one that starts parallel regions, whichever thread calls it.
"""

from __future__ import annotations

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
        self._thread.start()

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
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - the caller gets it raised
                future.set_exception(exc)
