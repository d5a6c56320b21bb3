"""Stop signals that unwind a command as Ctrl-C does, so what it started is stopped."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: The stop signal a ``sigterm_interrupts`` block last turned into a KeyboardInterrupt.
_last_stop: signal.Signals | None = None


def interrupted_status() -> int:
    """The exit status of a command that a stop unwound: 128 + the signal's number, as a shell
    reports a program that signal ended (143 after SIGTERM, 129 after SIGHUP), so a
    supervisor tells a ``timeout`` or ``docker stop`` from a Ctrl-C (130)."""
    return 128 + (_last_stop or signal.SIGINT)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Meanwhile SIGTERM (``timeout``, systemd, ``docker stop``) stops the command as Ctrl-C
    does. In a run (from its start to the episode's end) the loop finalizes the trajectory
    (status "interrupted", reason "stopped by SIGTERM") and the envs close on the way out, so
    their processes (a virtual phone, its adb server, Xvfb, chromium) end with the run and a
    device gets back what the env changed (a phone's keyboard, a display's keymap); ``device
    virtual`` stops its phone and removes its folder. So does SIGHUP (the terminal closed),
    unless it is ignored (nohup)."""
    global _last_stop
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    _last_stop = None

    def stop(signum: int, frame: object) -> None:
        global _last_stop
        _last_stop = signal.Signals(signum)
        raise KeyboardInterrupt(f"stopped by {_last_stop.name}")

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, stop)}
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Meanwhile Ctrl-C, SIGTERM and SIGHUP wait, and are handled as the block ends: for steps
    that must not be cut in two (a folder made, and not yet known as made to what removes it).
    Their handlers are swapped, not the signal mask: any thread may take a signal, and Python
    runs its handler in the main thread whatever that thread's mask."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])  # to the handler it would have met
