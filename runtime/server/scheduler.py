"""Collects requests that arrive together and runs them on the model as one batch.

The first waiting request opens a batch; others join it for up to ``wait_s`` or until it holds
``max_batch``. The batch runs on one worker thread (the model is used from one thread only), so
the event loop keeps accepting and validating requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class BatchScheduler(Generic[Job, Result]):
    def __init__(
        self,
        run_batch: Callable[[list[Job]], list[Result]],
        *,
        max_batch: int = 8,
        wait_s: float = 0.005,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Result]]] | None = None
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

    async def submit(self, job: Job) -> Result:
        if self._queue is None:
            raise RuntimeError("the scheduler is not started")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((job, future))
        return await future

    async def _collect(self) -> list[tuple[Job, asyncio.Future[Result]]]:
        queue = self._queue
        batch = [await queue.get()]
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while len(batch) < self.max_batch:
            left = deadline - asyncio.get_running_loop().time()
            try:
                batch.append(queue.get_nowait() if left <= 0 else
                             await asyncio.wait_for(queue.get(), left))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        # A client that went away while waiting gets nothing computed for it.
        return [(job, future) for job, future in batch if not future.done()]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            jobs = [job for job, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, jobs)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
