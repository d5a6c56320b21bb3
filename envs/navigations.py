"""Which page's navigation waits for its server, and since when.

While a page's main-frame navigation waits for its server, chromium holds every DevTools call
into the page (a screenshot, an evaluate). ``PendingNavigations`` follows Playwright's request
events, so that the browser env can wait such a navigation out on a clock of its own and stop
it, instead of being held until its watchdog ends chromium.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

#: A navigation that begins this soon after the page's last one failed replaced it.
REPLACED_WITHIN_S = 0.5


class PendingNavigations:
    """Each page's main-frame navigation request that has no answer yet, and the time its
    clock began: a redirect's next hop, and a navigation that replaced one still waiting (a
    page that tries a dead server again and again), go on with the clock of the first."""

    def __init__(self) -> None:
        self._pending: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._began: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        # Each page's navigation that failed last: when, and when its clock began.
        self._abandoned: weakref.WeakKeyDictionary[Any, tuple[float, float]] = \
            weakref.WeakKeyDictionary()

    def of(self, page: Any) -> Any:
        """``page``'s navigation request that waits for its server, or None."""
        return self._pending.get(page)

    def began(self, request: Any) -> float:
        """When ``request``'s clock began (``time.monotonic``)."""
        return self._began[request]

    def forget(self, page: Any) -> None:
        """The env stops ``page``'s navigation: its failure ("aborted") is the env's doing, and
        a navigation after it gets a clock of its own."""
        self._pending.pop(page, None)

    # -- Playwright's events (a context's request, response and requestfailed) ------------------
    def on_request(self, request: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError

        if not request.is_navigation_request():
            return
        try:
            frame = request.frame
        except PlaywrightError:  # a service worker's request has no frame
            return
        if frame.parent_frame is not None:  # a frame's navigation holds no call into the page
            return
        # The redirect's answer came before its next hop, and a replaced navigation's failure
        # just before the navigation that replaced it.
        page, now = frame.page, time.monotonic()
        earlier = request.redirected_from
        abandoned = self._abandoned.pop(page, None)
        if earlier is not None:
            self._began[request] = self._began.get(earlier, now)
        elif abandoned is not None and now - abandoned[0] < REPLACED_WITHIN_S:
            self._began[request] = abandoned[1]
        else:
            self._began[request] = now
        self._pending[page] = request

    def on_response(self, response: Any) -> None:
        """The server answered: a navigation waiting for it no longer waits."""
        self._drop(response.request)

    def on_failed(self, request: Any) -> None:
        """The request failed: a navigation waiting for it no longer waits, and one that aborted
        it (a new navigation of the page) may follow at once."""
        page = self._drop(request)
        if page is not None:
            self._abandoned[page] = (time.monotonic(), self._began[request])

    def _drop(self, request: Any) -> Any:
        """Forget ``request`` where it waits; the page it waited on, or None."""
        for page, pending in list(self._pending.items()):
            if pending is request:
                del self._pending[page]
                return page
        return None
