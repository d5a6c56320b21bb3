"""A timer for calls that have no timeout of their own (Playwright's calls into a page)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class Watchdog:
    """Runs ``expire`` on a timer thread when a watched stretch of work goes ``limit_s`` without
    progress: since it began, or since the last ``feed``. Watches nest (an outer one covers the
    inner ones), and the work itself is left to notice what ``expire`` did."""

    def __init__(self, limit_s: float, expire: Callable[[], None]) -> None:
        self.limit_s = limit_s
        self._expire = expire
        self._lock = threading.Lock()
        self._depth = 0
        self._timer: threading.Timer | None = None

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        with self._lock:
            self._depth += 1
            if self._depth == 1:
                self._arm()
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._disarm()

    def feed(self) -> None:
        """The work made progress: the limit counts from now."""
        with self._lock:
            if self._depth:
                self._disarm()
                self._arm()

    def _arm(self) -> None:
        timer = threading.Timer(self.limit_s, lambda: self._fire(timer))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self, timer: threading.Timer) -> None:
        with self._lock:  # a timer cancelled or replaced as it fired does nothing
            if self._timer is timer:
                self._timer = None
                self._expire()
