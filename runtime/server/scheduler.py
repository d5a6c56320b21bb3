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
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Generic, Iterator, Sequence, TypeVar

from agent.backends.base import OnText

Job = TypeVar("Job")
Result = TypeVar("Result")
#: Runs a batch of jobs; the second argument holds each job's sink (called on the worker thread),
#: the third tells for each job whether its requester is gone (then its result goes nowhere).
#: A job that failed has its exception in its place, which its requester gets raised.
RunBatch = Callable[[list[Job], Sequence[OnText], Sequence[Callable[[], bool]]],
                    list[Result | Exception]]


@dataclass
class _Waiting(Generic[Job, Result]):
    job: Job
    future: asyncio.Future[Result]
    on_text: OnText  # called on the event loop


class BatchScheduler(Generic[Job, Result]):
    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int = 8,
        wait_s: float = 0.005,
        gather_s: float = 0.2,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run_batch = run_batch
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
            sinks = [_on_loop(loop, w.on_text) if w.on_text else None for w in batch]
            # A request that left (a stream closed early) has its future cancelled; reading that
            # from the worker thread is a read of one attribute.
            gone = [w.future.done for w in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, jobs, sinks,
                                                     gone)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, result in zip(batch, results):
                if waiting.future.done():
                    continue
                if isinstance(result, Exception):
                    waiting.future.set_exception(result)
                else:
                    waiting.future.set_result(result)


def _on_loop(loop: asyncio.AbstractEventLoop, on_text: Callable[[str], None]
             ) -> Callable[[str], None]:
    """A sink for the worker thread that calls ``on_text`` on the event loop."""
    return lambda piece: loop.call_soon_threadsafe(on_text, piece)
