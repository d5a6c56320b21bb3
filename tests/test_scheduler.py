"""runtime.server.scheduler.BatchScheduler: which requests share a batch."""

from __future__ import annotations

import asyncio

from runtime.server.scheduler import BatchScheduler


async def _batches(arrivals: list[tuple[str, float, bool]], gather_s: float) -> list[list[str]]:
    """Submit each job after its delay, announced as incoming from the start or not."""
    batches: list[list[str]] = []
    scheduler = BatchScheduler(lambda jobs, sinks, gone: batches.append(list(jobs)) or jobs,
                               max_batch=8, wait_s=0.005, gather_s=gather_s)
    await scheduler.start()

    async def send(job: str, delay: float, announced: bool) -> str:
        if announced:
            with scheduler.incoming():
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(delay)
        return await scheduler.submit(job)

    try:
        results = await asyncio.gather(*(send(*a) for a in arrivals))
    finally:
        await scheduler.stop()
    assert results == [job for job, _, _ in arrivals]
    return batches


def test_a_batch_waits_for_requests_still_being_prepared():
    arrivals = [("a", 0.0, True), ("b", 0.08, True), ("c", 0.12, True)]
    assert asyncio.run(_batches(arrivals, gather_s=1.0)) == [["a", "b", "c"]]


def test_without_requests_on_their_way_a_batch_starts_at_once():
    arrivals = [("a", 0.0, False), ("b", 0.08, False)]
    assert asyncio.run(_batches(arrivals, gather_s=1.0)) == [["a"], ["b"]]


def test_a_request_that_takes_long_to_arrive_is_waited_for_only_up_to_gather_s():
    batches = asyncio.run(_batches([("a", 0.0, True), ("slow", 1.0, True)], gather_s=0.1))
    assert batches == [["a"], ["slow"]]


def test_a_joining_engine_takes_arrivals_answers_early_and_leaves_the_rest_for_the_next_batch():
    """The engine answers "short" at once, takes "late" (submitted while it runs) into its batch,
    takes "lost" without answering it and leaves "other" (it does not accept it): "lost" gets
    an error, "other" opens the next batch, and everyone else their answer."""
    import time

    runs: list[list[str]] = []

    def run_batch(jobs, sinks, gone, arrivals):
        runs.append(list(jobs))
        if jobs == ["other"]:
            return ["other!"]
        arrivals.deliver(jobs.index("short"), "short!")
        deadline = time.monotonic() + 5
        joined = []
        while len(joined) < 2 and time.monotonic() < deadline:
            joined += arrivals.take(lambda job: job != "other", 8)
            time.sleep(0.01)
        for j in joined:
            if j.job == "late":
                arrivals.deliver(j.index, "late!")
        time.sleep(0.2)  # "other" waits meanwhile
        return [f"{job}!" for job in jobs]

    async def main():
        scheduler = BatchScheduler(run_batch, max_batch=8, wait_s=0.05, joins=True)
        await scheduler.start()
        try:
            first = [asyncio.ensure_future(scheduler.submit(job)) for job in ("long", "short")]
            await asyncio.sleep(0.2)  # the batch runs by now, waiting for two to join
            assert [f.done() for f in first] == [False, True]  # "short" is answered already
            late = [asyncio.ensure_future(scheduler.submit(job))
                    for job in ("late", "lost", "other")]
            results = await asyncio.gather(*late, return_exceptions=True)
            return await asyncio.gather(*first), results
        finally:
            await scheduler.stop()

    (long, short), (late, lost, other) = asyncio.run(main())
    assert (long, short, late, other) == ("long!", "short!", "late!", "other!")
    assert isinstance(lost, RuntimeError) and "without answering" in str(lost)
    assert runs == [["long", "short"], ["other"]]


def test_no_request_joins_past_one_that_waits_for_the_next_batch():
    """"other" (refused: other sampling parameters) arrives between "early" and "late": the
    running batch takes "early" only, and "late" runs with "other" in the next batch, although
    the engine would have taken it and kept the first batch going."""
    import time

    runs: list[list[str]] = []

    def run_batch(jobs, sinks, gone, arrivals):
        runs.append(list(jobs))
        if jobs != ["first"]:
            return [f"{job}!" for job in jobs]
        joined, deadline = [], time.monotonic() + 1.0
        while time.monotonic() < deadline:  # keeps taking whatever it can for a second
            joined += arrivals.take(lambda job: job != "other", 8)
            time.sleep(0.01)
        for j in joined:
            arrivals.deliver(j.index, f"{j.job}!")
        return ["first!"]

    async def main():
        scheduler = BatchScheduler(run_batch, max_batch=8, wait_s=0.01, joins=True)
        await scheduler.start()
        try:
            first = asyncio.ensure_future(scheduler.submit("first"))
            await asyncio.sleep(0.2)
            rest = []
            for job in ("early", "other", "late"):
                rest.append(asyncio.ensure_future(scheduler.submit(job)))
                await asyncio.sleep(0.05)
            return await asyncio.gather(first, *rest)
        finally:
            await scheduler.stop()

    assert asyncio.run(main()) == ["first!", "early!", "other!", "late!"]
    assert runs == [["first"], ["other", "late"]]


def test_arrivals_offer_the_batch_its_row_cap():
    """A joining engine sees max_batch as ``arrivals.max_rows``, the most rows it may decode."""
    seen = []

    def run_batch(jobs, sinks, gone, arrivals):
        seen.append(arrivals.max_rows)
        return jobs

    async def main():
        scheduler = BatchScheduler(run_batch, max_batch=3, wait_s=0.01, joins=True)
        await scheduler.start()
        try:
            return await scheduler.submit("a")
        finally:
            await scheduler.stop()

    assert asyncio.run(main()) == "a" and seen == [3]


def test_requests_queued_when_a_batch_starts_go_before_those_sent_during_it():
    """max_batch 2 and an engine that takes nobody in: c and d, queued when [a, b] starts, run
    before e and f, which were sent while [a, b] ran."""
    import time

    runs: list[list[str]] = []

    def run_batch(jobs, sinks, gone, arrivals):
        runs.append(list(jobs))
        if jobs == ["a", "b"]:
            time.sleep(0.3)
        return jobs

    async def main():
        scheduler = BatchScheduler(run_batch, max_batch=2, wait_s=0.01, joins=True)
        await scheduler.start()
        try:
            first = [asyncio.ensure_future(scheduler.submit(j)) for j in "abcd"]
            await asyncio.sleep(0.1)
            later = [asyncio.ensure_future(scheduler.submit(j)) for j in "ef"]
            return await asyncio.gather(*first, *later)
        finally:
            await scheduler.stop()

    assert asyncio.run(main()) == list("abcdef")
    assert runs == [["a", "b"], ["c", "d"], ["e", "f"]]


def test_requests_taken_into_a_batch_that_fails_get_its_error():
    import time

    def run_batch(jobs, sinks, gone, arrivals):
        deadline = time.monotonic() + 5
        while not arrivals.take(lambda job: True, 8) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise MemoryError("out of memory")

    async def main():
        scheduler = BatchScheduler(run_batch, max_batch=8, wait_s=0.01, joins=True)
        await scheduler.start()
        try:
            first = asyncio.ensure_future(scheduler.submit("first"))
            await asyncio.sleep(0.1)
            joined = asyncio.ensure_future(scheduler.submit("joined"))
            return await asyncio.gather(first, joined, return_exceptions=True)
        finally:
            await scheduler.stop()

    first, joined = asyncio.run(main())
    assert isinstance(first, MemoryError) and isinstance(joined, MemoryError), (first, joined)
