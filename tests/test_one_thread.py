"""agent.backends.one_thread: a LocalBackend's torch work runs on one thread of its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.backends.local import LocalBackend
from agent.backends.one_thread import OneThread


def test_calls_run_in_turn_on_one_thread_and_errors_reach_the_caller():
    worker = OneThread("test")
    try:
        with ThreadPoolExecutor(4) as pool:
            names = set(pool.map(lambda _: worker.run(lambda: threading.current_thread().name),
                                 range(8)))
        assert names == {"test"}
        assert worker.run(lambda a, b=0: a + b, 2, b=3) == 5
        with pytest.raises(KeyError, match="missing"):
            worker.run(lambda: {}["missing"])
        # A call made from within a call runs at once (it would wait for itself otherwise).
        assert worker.run(lambda: worker.run(lambda: threading.current_thread().name)) == "test"
    finally:
        worker.close()


def test_the_backend_runs_its_model_on_its_own_thread_whoever_calls(tiny_checkpoint):
    backend = LocalBackend(tiny_checkpoint, device="cpu")
    seen: list[str] = []
    backend.model.model.register_forward_pre_hook(  # the decoder
        lambda module, args: seen.append(threading.current_thread().name))
    messages = [{"role": "user", "content": "hello"}]
    backend.generate(messages, [], max_new_tokens=2)
    with ThreadPoolExecutor(1, thread_name_prefix="caller") as pool:
        pool.submit(backend.generate, messages, [], max_new_tokens=2).result()
    backend.close()
    assert seen and set(seen) == {"torch"}
