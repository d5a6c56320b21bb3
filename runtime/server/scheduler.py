"""Collects requests that arrive together and runs them on the model as one batch.

The first waiting request opens a batch; others join it for up to ``wait_s`` or until it holds
``max_batch``. Requests being prepared (``incoming``: their bodies are read, their images being
decoded and preprocessed) are waited for up to ``gather_s``: requests sent together reach the
queue tens of milliseconds apart, and one that misses the batch waits for all of it.
The batch runs on one worker thread (the model is used from one thread only), so the event loop
keeps accepting and validating requests meanwhile.

A streamed request (``stream``) gets its text pieces as the model decodes them: the batch is run
with one callback per request, and the worker thread hands each piece to the event loop with
``call_soon_threadsafe``, so the pieces arrive in order and all before the request's result.

An engine that batches continuously (``joins``) also gets the batch's ``BatchArrivals``: requests
submitted while it runs wait there, and the engine takes those it can decode with the running
ones (``take``) and answers each request as soon as it is done (``deliver``), with at most
``max_batch`` rows decoding at once. What it leaves there opens the next batch. A request never
overtakes one submitted before it: once a waiting request is one the engine cannot take (other
sampling parameters), nothing after it joins, so the batch drains and the next one starts with
it (else a steady stream of joiners could keep it waiting for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Generic, Iterator, TypeVar

from agent.backends.base import Joined, OnText

Job = TypeVar("Job")
Result = TypeVar("Result")
#: Runs a batch of jobs; the second argument holds each job's sink (called on the worker thread),
#: the third tells for each job whether its requester is gone (then its result goes nowhere).
#: A job that failed has its exception in its place, which its requester gets raised. With
#: ``joins``, a fourth argument: the batch's ``BatchArrivals``.
RunBatch = Callable[..., list[Result | Exception]]


@dataclass(eq=False)  # told apart by identity: jobs (tensors) do not compare
class _Waiting(Generic[Job, Result]):
    job: Job
    future: asyncio.Future[Result]
    on_text: OnText  # called on the event loop

    def sink(self, loop: asyncio.AbstractEventLoop) -> OnText:
        """``on_text`` for the worker thread."""
        return _on_loop(loop, self.on_text) if self.on_text else None


class BatchArrivals(Generic[Job, Result]):
    """The requests submitted while a batch runs, for its engine on the worker thread
    (``agent.backends.base.Arrivals``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting[Job, Result]],
                 max_rows: int):
        self._loop, self._lock = loop, threading.Lock()
        self.max_rows = max_rows
        self.members = list(batch)  # the batch's requests, then those taken into it
        self.waiting: list[_Waiting[Job, Result]] = []

    def _joinable(self, accept: Callable[[Job], bool]) -> list[_Waiting[Job, Result]]:
        """The waiting requests before the first one ``accept`` refuses (lock held)."""
        joinable = []
        for waiting in self.waiting:
            if waiting.future.done():
                continue
            if not accept(waiting.job):
                break
            joinable.append(waiting)
        return joinable

    def any(self, accept: Callable[[Job], bool]) -> bool:
        """Could ``take`` take a request now?"""
        with self._lock:
            return bool(self._joinable(accept))

    def take(self, accept: Callable[[Job], bool], limit: int) -> list[Joined]:
        """Up to ``limit`` waiting requests that ``accept`` takes, oldest first, now members;
        none from behind one it refuses."""
        with self._lock:
            taken = self._joinable(accept)[:limit]
            self.waiting = [w for w in self.waiting if w not in taken and not w.future.done()]
            start = len(self.members)
            self.members += taken
        return [Joined(start + i, w.job, w.sink(self._loop), w.future.done)
                for i, w in enumerate(taken)]

    def deliver(self, index: int, result: Result | Exception) -> None:
        """Answer member ``index`` now (from the worker thread); its pieces went before."""
        self._loop.call_soon_threadsafe(_settle, self.members[index].future, result)

    def add(self, waiting: _Waiting[Job, Result]) -> None:
        """A request submitted while the batch runs (event loop)."""
        with self._lock:
            self.waiting.append(waiting)


class BatchScheduler(Generic[Job, Result]):
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int = 8,
        wait_s: float = 0.005,
        gather_s: float = 0.2,
        joins: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run_batch = run_batch
        self.joins = joins
        self._arrivals: BatchArrivals[Job, Result] | None = None  # of the batch running now
        self._left: list[_Waiting[Job, Result]] = []  # what the last batch did not take
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.gather_s = gather_s
        self._incoming = 0
        self._queue: asyncio.Queue[_Waiting[Job, Result]] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker = asyncio.create_task(self._serve())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._worker = self._executor = self._queue = None

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Counts a request on its way to ``submit`` (for the event loop's thread only)."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def submit(self, job: Job, on_text: OnText = None) -> Result:
        """The job's result; ``on_text`` (called on the event loop) gets its pieces first."""
        if self._queue is None:
            raise RuntimeError("the scheduler is not started")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self._arrivals is not None:
            self._arrivals.add(_Waiting(job, future, on_text))
        else:
            await self._queue.put(_Waiting(job, future, on_text))
        return await future

    async def stream(self, job: Job) -> AsyncIterator[str | Result]:
        """The job's text pieces as the model writes them, then its result (or its error).

        Closing the iterator early (a client that went away) drops the request: its batch runs
        on for the others, its pieces go nowhere, and the engine is told it is gone (the local
        one stops decoding it).
        """
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        result = asyncio.ensure_future(self.submit(job, pieces.put_nowait))
        # Queued after every piece: the worker hands pieces over before the batch returns.
        result.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
            yield result.result()
        finally:
            result.cancel()

    async def _collect(self) -> list[_Waiting[Job, Result]]:
        queue, loop = self._queue, asyncio.get_running_loop()
        batch, self._left = self._left[: self.max_batch], self._left[self.max_batch :]
        if not batch:
            batch = [await queue.get()]
        start = loop.time()
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            wait = max(self.gather_s, self.wait_s) if self._incoming else self.wait_s
            left = start + wait - loop.time()
            if left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):  # then look at _incoming again
                batch.append(await asyncio.wait_for(queue.get(), min(left, self.wait_s)))
        # A client that went away while waiting gets nothing computed for it.
        return [waiting for waiting in batch if not waiting.future.done()]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            jobs = [waiting.job for waiting in batch]
            sinks = [w.sink(loop) for w in batch]
            # A request that left (a stream closed early) has its future cancelled; reading that
            # from the worker thread is a read of one attribute.
            gone = [w.future.done for w in batch]
            args: list = [jobs, sinks, gone]
            if self.joins:
                self._arrivals = arrivals = BatchArrivals(loop, batch, self.max_batch)
                # What waits already may join too, before what comes later.
                for waiting in self._left:
                    arrivals.add(waiting)
                while not self._queue.empty():
                    arrivals.add(self._queue.get_nowait())
                self._left = []
                args.append(arrivals)
            error: Exception = RuntimeError("the batch it joined ended without answering it")
            try:
                results: list[Result | Exception] = await loop.run_in_executor(
                    self._executor, self._run_batch, *args)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                results, error = [exc] * len(batch), exc
            finally:
                if self.joins:
                    self._arrivals = None
                    # Requests it did not take open the next batch, in the order they came.
                    self._left = [w for w in arrivals.waiting if not w.future.done()]
            for waiting, result in zip(batch, results):
                _settle(waiting.future, result)
            if self.joins:  # taken in, but not answered: the batch's error, if it raised one
                for waiting in arrivals.members[len(batch) :]:
                    _settle(waiting.future, error)


def _settle(future: asyncio.Future, result: object) -> None:
    """Set a request's result or exception, unless it has one or was cancelled (event loop)."""
    if future.done():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


def _on_loop(loop: asyncio.AbstractEventLoop, on_text: Callable[[str], None]
             ) -> Callable[[str], None]:
    """A sink for the worker thread that calls ``on_text`` on the event loop."""
    return lambda piece: loop.call_soon_threadsafe(on_text, piece)
