"""agent.backends.one_thread: local backends' torch work runs on the process's one torch thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.backends.local import LocalBackend
from agent.backends.one_thread import OneThread, torch_thread


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


def test_backends_run_their_models_on_the_one_torch_thread_whoever_calls(tiny_checkpoint):
    backends = [LocalBackend(tiny_checkpoint, device="cpu") for _ in range(2)]
    seen: list[int | None] = []
    for backend in backends:
        backend.model.model.register_forward_pre_hook(  # the decoder
            lambda module, args: seen.append(threading.current_thread().ident))
    messages = [{"role": "user", "content": "hello"}]
    for backend in backends:
        backend.generate(messages, [], max_new_tokens=2)
        with ThreadPoolExecutor(1, thread_name_prefix="caller") as pool:
            pool.submit(backend.generate, messages, [], max_new_tokens=2).result()
        backend.close()
    assert len(seen) >= 8 and set(seen) == {torch_thread().run(threading.get_ident)}
    assert threading.get_ident() not in seen
