"""agent.backends.one_thread: local backends' torch work runs on the process's one torch thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


#: A command interrupted while the torch thread multiplies matrices: it exits 130 at once.
_INTERRUPTED_MID_CALL = """
import threading, time, torch
import cli.app
from agent.backends.one_thread import torch_thread
started = threading.Event()
def work():
    started.set()
    a = torch.randn(400, 400)
    for _ in range(3000):
        a = (a @ a.T) / 400
def command():
    threading.Thread(target=lambda: torch_thread().run(work), daemon=True).start()
    started.wait()
    time.sleep(0.2)
    raise SystemExit(130)  # as the CLI leaves on Ctrl-C
cli.app.app = command
cli.app.main()
"""


def test_a_command_interrupted_mid_torch_call_exits_with_its_status_not_an_abort():
    """libtorch aborted the process ("terminate called without an active exception", status
    134) when the interpreter was torn down under the torch thread's call."""
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_MID_CALL], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 130, done.stderr
    assert "terminate called" not in done.stderr
