"""The watchdog behind the browser's hang limit: it fires once, for the outermost watch, only
when the work goes the limit without progress."""

from __future__ import annotations

import time

from envs.watchdog import Watchdog


def counting(limit_s: float) -> tuple[Watchdog, list[float]]:
    fired: list[float] = []
    return Watchdog(limit_s, lambda: fired.append(time.monotonic())), fired


def test_work_that_outlasts_the_limit_fires_it_once() -> None:
    dog, fired = counting(0.1)
    with dog.watch():
        time.sleep(0.6)
    time.sleep(0.2)
    assert len(fired) == 1


def test_work_that_ends_in_time_never_fires_it() -> None:
    dog, fired = counting(0.3)
    for _ in range(3):
        with dog.watch(), dog.watch():
            time.sleep(0.02)
    time.sleep(0.6)
    assert fired == []


def test_an_inner_watch_that_ends_leaves_the_outer_one_armed() -> None:
    dog, fired = counting(0.3)
    with dog.watch():
        with dog.watch():
            pass
        time.sleep(0.8)
    assert len(fired) == 1


def test_progress_restarts_the_count() -> None:
    dog, fired = counting(1.0)
    with dog.watch():
        for _ in range(25):  # 2.5 s in all
            time.sleep(0.1)
            dog.feed()
    time.sleep(1.2)
    assert fired == []
    dog.feed()  # outside a watch: arms nothing
    time.sleep(1.2)
    assert fired == []
