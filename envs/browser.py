"""A browser env: Playwright's sync API driving the system chromium.

Screenshots are taken at device pixels, so with ``device_scale_factor`` 3 a 390x844 phone viewport
gives a 1170x2532 image. Actions arrive in screenshot pixels; the pointer goes to the CSS pixel
that holds the point (divided by the scale factor, rounded down), which is where chromium finds the
element the screenshot shows there. A key names a key, or one character: one a US keyboard lacks
(``é``, ``€``) is pressed as a keyboard that has it would press it, and shift with a character
types its shifted character (shift+y is ``Y``, shift+1 is ``!``), as on a US keyboard.

The env shows one page at a time, as a person's browser shows one tab. A page that a link or a
script opens in a new tab or window (a popup) is the page observed, at the env's viewport and
scale, from the next ``observe`` on, and actions go to it from then on (an action goes to the page
last observed, the screen the model saw). When the page shown closes, the page shown before it
comes back; ``back`` on a popup with no earlier page of its own closes it. A popup a page opens
by itself (on a timer) is shown too: Playwright runs chromium with its popup blocker off, and
the blocker could not single such popups out here anyway, since chromium counts Playwright's
screenshots and scripts as user activity.

A page's dialogs are never answered yes for the model (``_answer_dialog``): an alert is closed,
a confirm or prompt answered Cancel, a "leave this page?" answered Stay unless the very next
action tries to leave again; each is said in the action's result.

With ``allowed_domains`` set, every navigation request to a host off the list (each hop of a
redirect, each frame's and each popup's included) is stopped before it leaves, and the action
that caused it (a ``navigate``, or a click or key that follows a link) fails with a message that
names the blocked url; a ``type`` only says so, since its text arrived all the same. What the
page tried by itself since the last action is said in the next action's result, not blamed on
it. The page stays where it was; a popup whose first page is blocked is
closed, having shown nothing. Chromium's own preloading (a page's speculation-rules prefetch),
which no interception sees, is off in the env's profile; a page that lands off the list without
a request all the same is taken back before it is shown or acted on.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from PIL import Image

from core.actions import Action
from envs import keys
from envs.base import (
    POINTER_DONE,
    ElementInfo,
    Env,
    EnvError,
    EnvGone,
    Observation,
    SettleConfig,
    conceal,
    one_line_break_each,
    scroll_side,
    typed_done,
)
from envs.chromium import (
    CHROMIUM_PATH,
    chromium_temp,
    kill_chromium,
    launch_chromium_context,
    remove_temp,
)
from envs.navigations import PendingNavigations
from envs.page_elements import element_in
from envs.select_lists import SHOW_SELECT_OPTIONS
from envs.urls import NAVIGABLE_SCHEMES, ascii_domains, domain_allowed, normalize_url
from envs.watchdog import Watchdog

T = TypeVar("T")

#: The farthest one scroll goes, in viewport heights: an absurd amount (a model may write any
#: integer) is cut to this rather than overflow a float.
MAX_SCROLL_SCREENS = 100

#: The most of a dialog's text the model is told (a page may write any length).
MAX_DIALOG_TEXT = 200
#: The most dialogs, urls blocked off the allowed domains and downloads an action's result
#: names, before it and during it (the others are counted; a "leave this page?" is always named).
MAX_TOLD = 3
#: Rounds of answering what the page asked while the model thought, before an action.
MAX_DIALOG_ROUNDS = 10
#: ``BrowserEnv._leave`` while the env leaves pages on its own account.
_EVERY_PAGE = object()
#: The largest screenshot side (viewport times scale) the env takes: past it chromium's
#: emulation refuses the size or a capture takes gigabytes.
MAX_SCREEN_SIDE = 16384

# The page's own navigations (link clicks, form posts, location changes) are checked as they
# start, through the Navigation API, and cancelled there when they lead off the list: the page
# then truly stays, and the action that caused it can report the url. The request guard
# (BrowserEnv._guard_documents) catches the rest (redirects, frames, popups) as each request
# leaves. Keep in step with domain_allowed.
_NAVIGATION_GUARD = """
((allowed) => {
  if (window !== window.top || !window.navigation) return;
  const ok = (url) => {
    if (url === 'about:blank') return true;
    let u; try { u = new URL(url); } catch (e) { return false; }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
    const host = u.hostname.toLowerCase();
    return allowed.some((d) => host === d || host.endsWith('.' + d));
  };
  window.navigation.addEventListener('navigate', (event) => {
    if (!ok(event.destination.url) && event.cancelable) {
      event.preventDefault();
      (window.__vlagentBlocked = window.__vlagentBlocked || []).push(event.destination.url);
    }
  });
})(ALLOWED);
"""
# True from a frame's second animation frame on, polled at each: the frame has drawn.
_HAS_DRAWN = "polls => ++polls.count > 2"
#: Milliseconds a frame is given to draw, once: one that does not draw (offscreen or hidden, its
#: rendering paused) or does not answer (a script that never yields) holds a capture no longer.
FRAME_DRAW_WAIT_MS = 1000
_TAKE_BLOCKED = """() => {
  const blocked = window.__vlagentBlocked || [];
  window.__vlagentBlocked = [];
  return blocked;
}"""


#: The modifiers' bits in a DevTools key event.
_MODIFIER_BITS = {"Alt": 1, "Control": 2, "Meta": 4, "Shift": 8}
#: The key codes of a US keyboard's unshifted characters (the shifted ones are what Shift types).
_US_KEY_CODES = {
    **{c: f"Key{c.upper()}" for c in "abcdefghijklmnopqrstuvwxyz"},
    **{d: f"Digit{d}" for d in "0123456789"},
    "-": "Minus", "=": "Equal", "[": "BracketLeft", "]": "BracketRight", "\\": "Backslash",
    ";": "Semicolon", "'": "Quote", ",": "Comma", ".": "Period", "/": "Slash", "`": "Backquote",
}

#: The least time chromium is given to start (Playwright's own default).
LAUNCH_TIMEOUT_MS = 30_000
#: Captures tried before a transient "Unable to capture screenshot" is an error.
SCREENSHOT_ATTEMPTS = 4
#: Seconds the env waits on the browser without progress before it takes the page for hung and
#: ends chromium. Playwright's calls into a page (a click's input, an element lookup) have no
#: timeout: a script that never yields held the step forever. A capture or an element lookup
#: takes seconds, and a ``type`` shows progress every ``TYPE_PIECE`` characters.
HANG_S = 60.0
#: The least time a call into a page (a screenshot, a read) may take before the env looks for
#: a navigation that holds it.
HELD_PROBE_MS = 1000
#: How often it looks (a redirect's next hop, a page that navigates again) before the call gets
#: no timeout but the watchdog's.
HELD_PROBES = 4
#: How often a wait for a page's navigation looks whether its server answered.
NAVIGATION_POLL_MS = 25
#: How long a navigate to a download waits for chromium to name the file it refused.
DOWNLOAD_TOLD_MS = 2000
#: Characters typed between two signs of progress to the watchdog: a page may take up to
#: ``HANG_S / TYPE_PIECE`` seconds (6) per key, as a slow editor's key handler may.
TYPE_PIECE = 10


def check_screen(viewport: tuple[int, int], scale: float) -> None:
    """A page size and scale factor the env takes; else the ValueError that says why."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the scale {scale:g} must be a number above 0, e.g. 1 or 2")
    if max(viewport) * scale > MAX_SCREEN_SIDE:
        raise ValueError(f"the viewport {viewport[0]}x{viewport[1]} at scale {scale:g} makes "
                         f"screenshots over {MAX_SCREEN_SIDE} pixels a side, the most the "
                         "browser env takes")


def _watched(method: Callable[..., T]) -> Callable[..., T]:
    """A BrowserEnv method whose calls into the browser, its own ones between ``_call``s
    included, are under the env's watchdog."""
    @functools.wraps(method)
    def watched(self: "BrowserEnv", *args: Any) -> T:
        with self._watchdog.watch():
            return method(self, *args)
    return watched


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


class BrowserEnv(Env):
    """One chromium tab at a time (``page``, popups followed); use as a context manager so the
    browser always closes.

    ``playwright`` is an already started ``sync_playwright()`` instance to share: Playwright's
    sync API allows only one per thread, so several envs alive in one thread must share one.

    A browser that makes no progress for ``hang_s`` seconds within a call (a page whose script
    never yields holds every call into it) is ended: the call fails with that reason, and the
    env is dead, as after a crash.
    """

    name = "browser"
    form_factor = "browser"

    def __init__(
        self,
        viewport: tuple[int, int] = (1280, 800),
        device_scale_factor: float = 1.0,
        start_url: str = "about:blank",
        allowed_domains: Sequence[str] | None = None,
        timeout_s: float = 10.0,
        hang_s: float = HANG_S,
        headless: bool = True,
        settle: SettleConfig | None = None,
        playwright: Any = None,
    ) -> None:
        super().__init__(settle)
        from playwright.sync_api import sync_playwright

        check_screen(viewport, device_scale_factor)
        if not hang_s > 0:  # 0 would end chromium at its first call, NaN never
            raise ValueError(f"hang_s {hang_s:g} must be a number of seconds above 0")
        self.viewport = viewport
        self.scale = float(device_scale_factor)
        # As the browser's urls spell them, for the page's own guard (_NAVIGATION_GUARD).
        self.allowed_domains = ascii_domains(allowed_domains) \
            if allowed_domains is not None else None
        self.timeout_ms = timeout_s * 1000
        self.start_url = start_url
        self._dead: str | None = None
        self._watchdog = Watchdog(hang_s, self._hung)
        self._blocked: list[str] = []
        # The dialogs answered since the model was last told: what it was told of each, and
        # whether it asked to confirm leaving the page.
        self._dialogs: list[tuple[str, bool]] = []
        self._pointer_locked = False  # a page took a pointer lock since the last release
        self._downloads: list[str] = []  # the names of those refused since the model was told
        # The navigations that wait for their server, and what the model is told of those the
        # env stopped.
        self._navigations = PendingNavigations()
        self._stopped: list[str] = []
        # The page whose "leave this page?" the last action answered Stay, and the one whose
        # next is answered Leave (during the action after that one).
        self._stayed: Any = None
        self._leave: Any = None
        self._acting = False  # an action of the model's runs
        # The frames of other origins seen to draw (or given their time), with the url then.
        self._drawn: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        # Every page the context opens lands in _opened; _follow adopts them into _pages, the
        # open pages oldest first, whose last is the one shown (self.page).
        self._opened: list[Any] = []
        self._pages: list[Any] = []
        # Playwright's sync API allows one instance per thread, so several envs in one thread
        # share one; whoever passed it in stops it.
        self._own_playwright = playwright is None
        self._playwright = sync_playwright().start() if playwright is None else playwright
        self._temp = chromium_temp()
        try:
            self._context = self._start(lambda: launch_chromium_context(
                # Starting chromium on a busy machine takes seconds, whatever a page may take.
                self._playwright, self._temp.name, headless=headless,
                timeout=max(self.timeout_ms, LAUNCH_TIMEOUT_MS),
                viewport={"width": viewport[0], "height": viewport[1]},
                device_scale_factor=self.scale,
                accept_downloads=False,  # nobody asked for files on this machine
            ))
            self._browser = self._context.browser
            self._browser.on("disconnected", lambda _: self._mark_dead("the browser closed"))
            self._context.set_default_timeout(self.timeout_ms)
            self._context.add_init_script(SHOW_SELECT_OPTIONS)
            # A page that locks the pointer says so (any frame), so that an action releases
            # the lock only where one was taken: looking in every frame cost each click.
            self._context.expose_binding(_LOCK_BINDING, lambda source: self._lock_taken())
            self._context.add_init_script(_WATCH_POINTER_LOCK)
            if self.allowed_domains is not None:
                self._guard_documents()
                allowed = json.dumps(self.allowed_domains)
                self._context.add_init_script(_NAVIGATION_GUARD.replace("ALLOWED", allowed))
            # On the context, not on each page: a popup's dialog during its first load comes
            # before its page does.
            self._context.on("dialog", self._answer_dialog)
            self._context.on("page", self._opened_page)
            self._context.on("request", self._navigations.on_request)
            self._context.on("response", self._navigations.on_response)
            self._context.on("requestfailed", self._navigations.on_failed)
            blank = list(self._context.pages)  # the profile's first, opened before the scripts
            self._context.new_page()  # reported to the handler above before it returns
            for page in blank:
                page.close()
            self._follow()
            if start_url != "about:blank":
                self._call("open start_url", lambda: self._goto(start_url))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _start(launch: Any) -> Any:
        from playwright.sync_api import Error as PlaywrightError

        try:
            return launch()
        except PlaywrightError as exc:
            raise EnvError(f"cannot start chromium at {CHROMIUM_PATH}: {exc}") from None

    # -- Env --------------------------------------------------------------------------------
    @_watched
    def capture(self) -> Image.Image:
        if self.allowed_domains is not None:
            self._leave_off_list()
        png = self._screenshot()
        if self._opened:  # a page opened while the frame was taken: that page is the one shown
            png = self._screenshot()
        return Image.open(io.BytesIO(png)).convert("RGB")

    def _screenshot(self) -> bytes:
        """The page to show (``_follow``), captured. Playwright hides the text caret in
        screenshots, so a blinking caret cannot keep observe() from settling."""
        from playwright.sync_api import Error as PlaywrightError

        def shoot() -> bytes:
            while True:
                self._follow()
                try:
                    self._await_navigation()  # before the frames' looks, held as well
                    self._frames_drawn()
                    return self._unheld(lambda timeout: self.page.screenshot(type="png",
                                                                             timeout=timeout))
                except PlaywrightError:
                    if not self.page.is_closed():  # a page that closed meanwhile gives way
                        raise

        for attempt in range(1, SCREENSHOT_ATTEMPTS):
            try:
                return self._call("screenshot", shoot)
            except EnvError as exc:
                # While a navigation swaps the page's renderer (an error page replacing a page
                # that failed to load, say), chromium briefly cannot capture: try again.
                if self._dead is not None or "Unable to capture screenshot" not in str(exc):
                    raise
                time.sleep(0.2 * attempt)
        return self._call("screenshot", shoot)

    def _unheld(self, call: Callable[[float], T]) -> T:
        """``call(timeout_ms)``, a call into the shown page with a timeout of its own. While the
        page's navigation waits for its server, chromium holds every DevTools call into the
        page, and that navigation may begin just after the env last looked (a link the last
        action clicked): a call that waits past a quarter of the hang limit (at least
        ``HELD_PROBE_MS``) looks for such a navigation, waits for it (``_await_navigation``)
        and is made again, a few times at most (a redirect's next hop, a page that navigates
        again); then it gets no timeout but the watchdog's (a screenshot failing after the
        env's timeout ended the episode)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        probe_ms = max(HELD_PROBE_MS, self._watchdog.limit_s * 250)
        for _ in range(HELD_PROBES):
            try:
                return call(probe_ms)
            except PlaywrightTimeoutError:
                # No navigation known yet may be one whose request a loaded machine has not
                # reported yet: look again at the next probe. A script that never yields is
                # ended by the watchdog all the same, which these probes do not feed.
                self._await_navigation()
        return call(0)

    def _await_navigation(self) -> bool:
        """Wait for the shown page's navigation, if its server has not answered, up to the
        hang limit counted from when it (or the first hop of its redirects) began; then stop
        its loading, so that the page stays where it was, and tell the model before its next
        action. Ending chromium, as the watchdog would, lost the whole session for one server
        that never answers. A page that closed has nothing to wait for: the caller finds out
        what the browser now shows. True if there was a navigation to wait for."""
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.wait_for_timeout(0)  # hands over the events chromium sent meanwhile
        except PlaywrightError:
            if self.page.is_closed():  # heard of during the call
                return False
            raise
        request = self._navigations.of(self.page)
        if request is None:
            return False
        limit = self._watchdog.limit_s
        # A navigation that replaces this one (a page that tries a dead server again and
        # again) is waited for on the same clock.
        while time.monotonic() < self._navigations.began(request) + limit:
            self._watchdog.feed()  # a wait of the env's own, bounded by the line above
            self.page.wait_for_timeout(NAVIGATION_POLL_MS)
            now = self._navigations.of(self.page)
            if now is None:  # answered, or failed; a replacement comes just after a failure
                self.page.wait_for_timeout(NAVIGATION_POLL_MS)
                now = self._navigations.of(self.page)
            if now is None:
                return True
            request = now
        self._navigations.forget(self.page)  # before the stop's own "aborted" comes
        self._send(self.page, "Page.stopLoading")
        self._watchdog.feed()
        self._stopped.append(f"{request.url} did not answer within {limit:g} s, so its loading "
                             f"was stopped and the page stayed at {self.page.url}")
        return True

    def _frames_drawn(self) -> None:
        """Wait until each frame of another origin than the page's, in view, has drawn, once per
        document (for ``FRAME_DRAW_WAIT_MS`` at most). A capture made before such a frame (drawn
        by a renderer of its own) first drew left chromium sending the clicks over it to the
        frame's element in the page for as long as the page stayed: every click was lost."""
        from playwright.sync_api import Error as PlaywrightError

        origin = _origin(self.page.url)
        for frame in self.page.frames:
            url = frame.url
            # A frame that has loaded nothing yet (a lazy one) has nothing drawn to click.
            if not url or url.startswith("about:") or _origin(url) == origin:
                continue
            if self._drawn.get(frame) == url:
                continue
            self._watchdog.feed()  # each frame has its own FRAME_DRAW_WAIT_MS
            with contextlib.suppress(PlaywrightError):  # gone, or out of time: go on
                # One out of view takes no click and does not draw: it is looked at again at
                # the next capture, not waited for.
                if not self._in_view(frame):
                    continue
                frame.wait_for_function(_HAS_DRAWN, arg={"count": 0}, polling="raf",
                                        timeout=FRAME_DRAW_WAIT_MS)
            self._drawn[frame] = url

    def _in_view(self, frame: Any) -> bool:
        """Whether any of ``frame``'s box is in the viewport (Playwright gives the box in the
        main frame's viewport, through the frames around it; None: not rendered)."""
        owner = frame.frame_element()
        try:
            box = owner.bounding_box()
        finally:
            owner.dispose()
        width, height = self.viewport
        return box is not None and box["width"] > 0 and box["height"] > 0 and \
            box["x"] < width and box["y"] < height and \
            box["x"] + box["width"] > 0 and box["y"] + box["height"] > 0

    def extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {
            "url": self.page.url,
            "title": self._title(),
            "viewport": list(self.viewport),
            "device_scale_factor": self.scale,
        }
        if self._blocked:
            extras["blocked_urls"] = self._take_blocked()
        return extras

    def _title(self) -> str:
        # A page in the middle of navigating has no title yet: that is not a failure.
        try:
            return self._call("title", lambda: self._into_page(self.page.title))
        except EnvError:
            if self._dead is not None:
                raise
            return ""

    def on_page(self, what: str, call: Callable[[Any], T]) -> T:
        """``call(page)`` on the page shown, run as the env's own calls are (for a task that
        reads or sets up the page): a dead browser, a Playwright error or a page that stops
        answering (``hang_s``) is an EnvError that says ``what`` failed."""
        return self._call(what, lambda: self._into_page(lambda: call(self.page)))

    def element_at(self, x: int, y: int) -> ElementInfo | None:
        return self._describe(list(self._css(x, y)))

    def focused_element(self) -> ElementInfo | None:
        return self._describe(None)

    def _describe(self, point: list[float] | None) -> ElementInfo | None:
        def alive() -> bool:
            return self._dead is None and self._browser.is_connected()

        return self._call("element lookup", lambda: self._into_page(
            lambda: element_in(self.page.main_frame, point, alive)))

    def _into_page(self, call: Callable[[], T]) -> T:
        """``call()``, a call into the shown page, once its navigation (if one waits for its
        server, which holds every call into the page) has answered or been stopped: a gate's
        lookup of a page that began to navigate while the model thought ended chromium."""
        self._await_navigation()
        return call()

    @_watched
    def _execute(self, action: Action) -> str:
        what, hide = action.kind, ()
        if action.kind == "type":
            # An error never quotes the typed text, which may hold a secret's value.
            text = action.text
            what = f"typing {len(text)} characters"
            hide = (text, one_line_break_each(text))
        # What the page asked and tried on its own while the model thought is not this
        # action's.
        self._answer_what_was_asked()
        before = self._take_dialogs()
        # What the page did on its own before the action: urls blocked, downloads refused.
        did = _blocked_said("before it, the page", self._blocked_since()) \
            if self.allowed_domains is not None else []
        did += _downloads_said("before it, ", self._take_downloads())
        did += [f"before it, {said}" for said in self._take_stopped()]
        self._leave, self._stayed, self._acting = self._stayed, None, True
        try:
            message = self._call(what, lambda: self._perform(action), hide)
            if self.allowed_domains is not None:
                self._leave_off_list()
                if action.kind == "type":
                    # Its text arrived all the same: a failure would have it typed twice.
                    message = "; ".join([message, *_blocked_said("the page then",
                                                                  self._blocked_since())])
                elif action.kind not in ("navigate", "back"):
                    self._raise_if_blocked(action.kind)
        except EnvError as exc:
            # A try that failed before the page could ask (chromium aborts a navigation that
            # starts right after a Stay) keeps the Leave for the next; any other action that
            # failed was the very next action all the same.
            if "net::ERR_ABORTED" in str(exc):
                self._stayed = self._stayed or self._leave
            raise EnvError(_said_too(self._and_stopped(str(exc)), did, before,
                                     self._take_dialogs(), self._take_downloads())) from None
        finally:
            self._leave, self._acting = None, False
        return _said_too(self._and_stopped(message), did, before, self._take_dialogs(),
                         self._take_downloads())

    def _and_stopped(self, message: str) -> str:
        """An action's result with the navigations it waited out and stopped (the allowlist's
        read of the page after a click waits for the page the click began to load)."""
        return "; ".join([message, *self._take_stopped()])

    def _opened_page(self, page: Any) -> None:
        self._opened.append(page)
        # On each page as it opens: a popup that is a download (chromium closes it) starts
        # its download before the env adopts it.
        page.on("download", lambda download: self._downloads.append(download.suggested_filename))

    def _answer_what_was_asked(self) -> None:
        """Answer every dialog the page raised while the model thought, before the action:
        chromium drops an input sent while a dialog is open, and answering one dialog lets the
        page's script go on to its next. Playwright hands events over only inside a call; an
        empty script in the page returns once the page's own has run to its end, each dialog
        answered on the way (again while that turned up new ones, up to a limit)."""
        from playwright.sync_api import Error as PlaywrightError

        def page_ran() -> None:
            # A page that closed or navigated meanwhile has nothing more to ask; the action
            # finds out what it now shows.
            with contextlib.suppress(PlaywrightError):
                self.page.evaluate("0")

        for _ in range(MAX_DIALOG_ROUNDS):
            asked = len(self._dialogs)
            self._call("sync", lambda: self._into_page(page_ran))
            if len(self._dialogs) == asked:
                return

    def _answer_dialog(self, dialog: Any) -> None:
        """Cancel what a page asks: an alert is closed, a confirm or a prompt answered Cancel
        (nobody asked for what it would do), a "leave this page?" answered Stay, so that what
        the page holds is not lost to a stray click; asked again at the model's very next
        action, as the model was told, Leave. The model is told in the result of its action."""
        from playwright.sync_api import Error as PlaywrightError

        asked = json.dumps(" ".join(dialog.message.split())[:MAX_DIALOG_TEXT],
                           ensure_ascii=False)
        leaving = dialog.type == "beforeunload"
        leave = leaving and self._leave is not None and self._leave in (dialog.page, _EVERY_PAGE)
        if leave and self._leave is _EVERY_PAGE:  # the env's own move, not the model's
            with contextlib.suppress(PlaywrightError):
                dialog.accept()
            return
        if leave:
            said = "the page asked again to confirm leaving it, answered Leave"
        elif leaving:
            said = ("the page asked to confirm leaving it (what it holds would be lost), "
                    "answered Stay")
            if self._acting:  # the model's own try; one the page made by itself grants nothing
                self._stayed = dialog.page
                said += "; try to leave it again, as the next action, to leave anyway"
        elif dialog.type == "alert":
            said = f"the page showed an alert {asked}, closed"
        else:
            said = f"the page asked {asked} ({dialog.type}), answered Cancel"
        self._dialogs.append((said, leaving))
        with contextlib.suppress(PlaywrightError):  # its page closed meanwhile
            dialog.accept() if leave else dialog.dismiss()

    @contextlib.contextmanager
    def _leaving(self) -> Iterator[None]:
        """Leave pages whatever they ask (the env's own moves: a reset, a page off the list)."""
        self._leave = _EVERY_PAGE
        try:
            yield
        finally:
            self._leave = None

    def _take_dialogs(self) -> list[tuple[str, bool]]:
        dialogs, self._dialogs = self._dialogs, []
        return dialogs

    def _take_downloads(self) -> list[str]:
        downloads, self._downloads = self._downloads, []
        return downloads

    def _take_stopped(self) -> list[str]:
        stopped, self._stopped = self._stopped, []
        return stopped

    def reset(self, prepare: Callable[[Env], None] | None = None) -> Observation:
        """Close every popup and take the oldest page back to ``start_url`` (then run
        ``prepare``, if any), and observe."""
        self._take_blocked()
        # What the last episode's page asked goes with it (handed over inside a call); what
        # the start page asks as it loads is told at the new episode's first action.
        self._call("sync", self._context.cookies)
        self._take_dialogs()
        self._take_downloads()
        self._take_stopped()
        with self._leaving():  # a new episode: what the last one left on a page goes
            self._call("reset", self._restart)
        self._stayed = None  # a Stay told to the last episode's model grants this one nothing
        return super().reset(prepare)

    def _restart(self) -> None:
        self._follow()
        first, *popups = self._pages
        for page in popups:
            page.close()
        self._pages, self.page = [first], first
        # The episode starts as the first did, on a tab whose history holds only the blank page
        # it opened on: back never reaches an earlier episode's pages, and the start page may
        # not close the tab (chromium lets a script close a tab that has one entry).
        first.goto("about:blank")
        self._send(first, "Page.resetNavigationHistory")
        if self.start_url != "about:blank":
            self._goto(self.start_url)

    @staticmethod
    def _send(page: Any, method: str) -> dict[str, Any]:
        """One DevTools call on ``page``'s target."""
        session = page.context.new_cdp_session(page)
        try:
            return session.send(method)
        finally:
            session.detach()

    def close(self) -> None:
        self._mark_dead("the browser env was closed")
        closed = True
        try:
            with self._watchdog.watch():
                self._context.close()  # chromium has exited when it returns
        except Exception:  # noqa: BLE001 - already gone: closing twice or after a crash is fine
            closed = False
        if self._own_playwright:
            with contextlib.suppress(Exception):
                self._playwright.stop()
        remove_temp(self._temp, chromium_closed=closed)

    # -- actions ----------------------------------------------------------------------------
    def _css(self, x: float, y: float) -> tuple[int, int]:
        # The CSS pixel that holds the point, not the point: chromium hit-tests (x, y) as the
        # CSS pixel square that starts there, so at scale 3 screenshot pixel 599 (CSS 199.67)
        # would reach an element that starts at CSS 200. The epsilon absorbs float error
        # (330 / 1.1 is 299.99999999999994).
        return math.floor(x / self.scale + 1e-9), math.floor(y / self.scale + 1e-9)

    def _perform(self, action: Action) -> str:
        from playwright.sync_api import Error as PlaywrightError

        if self.page.is_closed():
            # The page the model saw is gone; its action is not done on a page it never saw.
            self._follow()
            raise EnvError(f"{action.kind}: the page closed before it; the browser now shows "
                           f"{self.page.url}")
        try:
            return self._act(action)
        except PlaywrightError:
            if not self.page.is_closed() or self._dead is not None:
                raise
            # A close button: done, and the page went. (A page that closed unheard of just
            # before the action reads the same: the sync API hears of a close during a call.)
            return f"{action.kind} closed the page"

    def _act(self, action: Action) -> str:
        released = action.kind in _POINTER_KINDS and self._release_pointer()
        done = self._act_on_page(action)
        if released:
            return f"{done}; the page had locked the pointer (clicks went to one element, " \
                   "wherever they were), released before it"
        # Escape looks in every frame: a lock taken just before it may not have been told.
        if done == "pressed Escape" and self._release_pointer(told_only=False):
            done += "; released the pointer the page had locked, as a browser does"
        return done

    def _lock_taken(self) -> None:
        self._pointer_locked = True

    def _release_pointer(self, told_only: bool = True) -> bool:
        """Release a pointer lock a page took, in any frame, whether one was held (looked for
        only where a page told of one, unless not ``told_only``). A page (a game, a 3D view)
        may lock the pointer, and then every click goes to its locked element, not the one the
        model sees at the pixel nor the one the gate judged there; the browser's own Escape,
        which ends the lock, never reaches a page through the env's keys."""
        from playwright.sync_api import Error as PlaywrightError

        if told_only and not self._pointer_locked:  # told before the action
            return False
        self._pointer_locked = False
        released = False
        for frame in self.page.frames:
            with contextlib.suppress(PlaywrightError):  # a frame that went meanwhile
                released = frame.evaluate(_RELEASE_POINTER) or released
        return released

    def _act_on_page(self, action: Action) -> str:
        mouse, keyboard = self.page.mouse, self.page.keyboard
        kind = action.kind
        if kind in ("click", "double_click", "right_click", "move"):
            x, y = self._css(action.x, action.y)
            if kind == "move":
                mouse.move(x, y)
            else:
                mouse.click(
                    x, y,
                    button="right" if kind == "right_click" else "left",
                    click_count=2 if kind == "double_click" else 1,
                )
            return POINTER_DONE[kind]
        if kind == "drag":
            mouse.move(*self._css(action.x, action.y))
            mouse.down()
            mouse.move(*self._css(action.x2, action.y2), steps=12)
            mouse.up()
            return POINTER_DONE[kind]
        if kind == "scroll":
            return self._scroll(action)
        if kind == "type":
            # Playwright presses Enter for "\r" and for "\n": "\r\n" would be two line breaks.
            text = one_line_break_each(action.text)
            for start in range(0, len(text), TYPE_PIECE):  # a long text takes seconds
                keyboard.type(text[start:start + TYPE_PIECE])
                self._watchdog.feed()
            return typed_done(text)
        if kind in ("key", "hotkey"):
            names = [action.key] if kind == "key" else action.keys
            try:
                pressed = [keys.backend_key(k, keys.PLAYWRIGHT) for k in names]
            except ValueError as exc:
                raise EnvError(str(exc)) from None
            written = "+".join(pressed)
            if "Shift" in pressed[:-1] and pressed[-1] in _US_KEY_CODES:
                # Playwright's "Shift+y" types "y": its key's code ("Shift+KeyY") types "Y",
                # as a keyboard does.
                pressed[-1] = _US_KEY_CODES[pressed[-1]]
            combo = "+".join(pressed)
            if len(pressed[-1]) == 1 and not pressed[-1].isascii():
                # Playwright's keyboard knows the US layout only ("Unknown key: é").
                self._press_character(pressed[:-1], pressed[-1])
            else:
                keyboard.press(combo)
            return f"pressed {written}"
        if kind == "navigate":
            url = normalize_url(action.url)
            # A model's navigation opens web pages only: file: would read the host's files,
            # javascript: and data: would run the model's own script in the page.
            try:
                scheme = urlsplit(url).scheme
            except ValueError as exc:  # a bad IPv6 literal, a netloc that NFKC would change...
                raise EnvError(f"{url[:80]!r} is not a url that can be opened: {exc}") from None
            if scheme not in NAVIGABLE_SCHEMES and url != "about:blank":
                raise EnvError(f"navigate opens http(s) urls only; {url[:80]!r} was refused")
            return self._goto(url)
        if kind == "back":
            return self._back()
        raise EnvError(f"the browser env cannot perform '{kind}'")  # guarded by action_kinds

    def _press_character(self, held: list[str], char: str) -> None:
        """Press a key that types ``char`` (one a US keyboard lacks) with the keys ``held``
        down, as a keyboard that has it would: keydown with ``char`` as its key, then the text
        (none while ctrl, alt or meta is held, as for any key)."""
        mask = sum(_MODIFIER_BITS.get(key, 0) for key in held)
        text = "" if mask & ~_MODIFIER_BITS["Shift"] else char
        session = self.page.context.new_cdp_session(self.page)
        try:
            for key in held:
                self.page.keyboard.down(key)
            session.send("Input.dispatchKeyEvent", {
                "type": "keyDown" if text else "rawKeyDown", "key": char, "text": text,
                "unmodifiedText": char, "modifiers": mask})
            session.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": char,
                                                     "modifiers": mask})
        finally:
            for key in reversed(held):
                self.page.keyboard.up(key)
            session.detach()

    def _back(self) -> str:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        # go_back gives no response for a same-document entry (a #link, an app's pushState) as
        # for no entry at all, so the tab's own history says whether there is one. The blank
        # page the tab opened on is no page to go back to.
        history = self._send(self.page, "Page.getNavigationHistory")
        index, entries = history["currentIndex"], history["entries"]
        if index < 1 or (index == 1 and entries[0]["url"] == "about:blank"):
            if sum(not page.is_closed() for page in self._pages) < 2:
                raise EnvError("there is no previous page to go back to")
            # A popup with no earlier page of its own: back closes it, as a phone's browser
            # does with a tab a link opened, and the page shown before it comes back.
            closed = self.page.url
            self.page.close()
            self._follow()
            return f"closed {closed} and went back to {self.page.url}"
        try:
            self.page.go_back(wait_until="domcontentloaded")
        except PlaywrightTimeoutError:  # the page goes on loading
            raise EnvError(self._still_loading("going back")) from None
        return f"went back to {self.page.url}"

    def _scroll(self, action: Action) -> str:
        width, height = self.viewport
        if action.x is None:
            x, y = width / 2, height / 2
        else:
            x, y = self._css(action.x, action.y)
        side = scroll_side(action.direction, width, height)
        amount = min(action.amount, MAX_SCROLL_SCREENS * side * self.scale) / self.scale \
            if action.amount else side / 2
        dx, dy = {"up": (0, -amount), "down": (0, amount),
                  "left": (-amount, 0), "right": (amount, 0)}[action.direction]
        self.page.mouse.move(x, y)
        self.page.mouse.wheel(dx, dy)
        return f"scrolled {action.direction}"

    def _still_loading(self, what: str) -> str:
        return (f"{what} did not load within {self.timeout_ms / 1000:g} s; it may still be "
                "loading, and the next screenshot waits for it")

    def _goto(self, url: str) -> str:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        url = normalize_url(url)
        if self.allowed_domains is not None and not domain_allowed(url, self.allowed_domains):
            raise EnvError(self._blocked_message(url))
        try:
            self.page.goto(url, wait_until="domcontentloaded")
        except Exception as exc:  # noqa: BLE001 - re-raised below with the reason
            if self.allowed_domains is not None:
                self._raise_if_blocked("navigate")
            if isinstance(exc, PlaywrightTimeoutError):  # the page goes on loading
                # Unless the allowlist's read above waited it out and stopped it.
                raise EnvError("; ".join(self._take_stopped()) or self._still_loading(url)) \
                    from None
            if "Download is starting" in str(exc):
                if not self._downloads:  # told with this action, not the next one's
                    with contextlib.suppress(PlaywrightTimeoutError):
                        self.page.wait_for_event("download", timeout=DOWNLOAD_TOLD_MS)
                return f"{url} is a download, not a page; the page stays at {self.page.url}"
            raise exc
        return f"opened {self.page.url}"

    # -- pages ------------------------------------------------------------------------------
    def _follow(self) -> None:
        """Make the newest open page the one shown: adopt the pages opened since the last look,
        each at the env's viewport (a ``window.open`` that names a size asks for its own), and
        drop the closed ones, so that a page that closed gives way to the one shown before it."""
        from playwright.sync_api import Error as PlaywrightError

        size = {"width": self.viewport[0], "height": self.viewport[1]}
        while self._opened:
            page = self._opened.pop(0)
            try:
                if page.viewport_size != size:
                    page.set_viewport_size(size)
            except PlaywrightError:
                if not page.is_closed():
                    raise
            page.on("crash", lambda _: self._mark_dead("the page crashed"))
            self._pages.append(page)
        self._pages = [page for page in self._pages if not page.is_closed()]
        if not self._pages:
            self._mark_dead("the page closed")
            raise EnvGone(f"{self._dead}; start a new browser env")
        self.page = self._pages[-1]

    # -- allowlist --------------------------------------------------------------------------
    def _guard_documents(self) -> None:
        """Hold every document request of the browser (any page's, any frame's, any popup's
        first) as it leaves, and answer one for a host off the list with "204 No Content",
        which a browser takes as "stay where you are". This is chromium's own interception (CDP
        Fetch), not a Playwright route: a route never sees the hops of a redirect, so an allowed
        url that redirected off the list was followed."""
        from playwright.sync_api import Error as PlaywrightError

        session = self._browser.new_browser_cdp_session()

        def close_if_blank_popup(frame_id: str) -> None:
            # A tab's main frame has the tab's id. A popup whose first page was blocked stays
            # blank, and Playwright never reports it (it waits for a first page): close it.
            info = session.send("Target.getTargetInfo", {"targetId": frame_id})["targetInfo"]
            if info["type"] == "page" and info.get("openerId") and \
                    info["url"] in ("", "about:blank"):
                session.send("Target.closeTarget", {"targetId": frame_id})

        def paused(event: dict[str, Any]) -> None:
            request_id, url = event["requestId"], event["request"]["url"]
            try:
                if domain_allowed(url, self.allowed_domains or []):
                    session.send("Fetch.continueRequest", {"requestId": request_id})
                else:
                    self._blocked.append(url)
                    session.send("Fetch.fulfillRequest",
                                 {"requestId": request_id, "responseCode": 204})
                    close_if_blank_popup(event["frameId"])
            except PlaywrightError:
                pass  # the browser, the request's frame or (not a tab) its target went away

        session.on("Fetch.requestPaused", paused)
        session.send("Fetch.enable", {"patterns": [
            {"urlPattern": "*", "resourceType": "Document", "requestStage": "Request"}]})

    def _leave_off_list(self) -> None:
        """Take back a page that reached a host off the list without a request the guard saw:
        in a profile that preloads, chromium fetches a page's speculation-rules prefetch
        itself, and a navigation it serves (its redirect to another host too) never asks the
        network. The page the model sees and acts on is never one off the list."""
        from playwright.sync_api import Error as PlaywrightError

        def off_list(url: str) -> bool:  # an error page or about:blank is on no host
            return urlsplit(url).scheme in ("http", "https") and \
                not domain_allowed(url, self.allowed_domains or [])

        if not off_list(self.page.url):
            return
        self._blocked.append(self.page.url)
        with self._leaving(), contextlib.suppress(PlaywrightError):
            self.page.go_back(wait_until="domcontentloaded")
        if off_list(self.page.url):
            with self._leaving():
                self._call("leave the page off the list", lambda: self.page.goto("about:blank"))

    def _take_blocked(self) -> list[str]:
        blocked, self._blocked = list(dict.fromkeys(self._blocked)), []
        return blocked

    def _raise_if_blocked(self, kind: str) -> None:
        if blocked := self._blocked_since():
            raise EnvError(f"{kind}: " + self._blocked_message(blocked[0]))

    def _blocked_since(self) -> list[str]:
        """The urls blocked since the last look: stopped as requests, or cancelled in the page
        by its guard (a navigation chromium would have served without asking the network)."""
        try:
            # Held, as every call into it, while a navigation it began (an allowed host's
            # page) waits for its server: a wait for a function has a timeout, and its array
            # is taken at once.
            cancelled = self._unheld(lambda timeout: self.page.wait_for_function(
                _TAKE_BLOCKED, timeout=timeout).json_value())
        except Exception:  # noqa: BLE001 - the page navigated away, which the guard allowed
            cancelled = []
        return list(dict.fromkeys([*cancelled, *self._take_blocked()]))

    def _blocked_message(self, url: str) -> str:
        allowed = ", ".join(self.allowed_domains or [])
        return (
            f"blocked navigation to {url}: its domain is not in the allowed domains ({allowed}); "
            f"the page stayed at {self.page.url}"
        )

    # -- failures ---------------------------------------------------------------------------
    def _mark_dead(self, reason: str) -> None:
        if self._dead is None:
            self._dead = reason

    def _hung(self) -> None:
        """From the watchdog's thread: the call under way gets Playwright's "closed" error."""
        self._mark_dead(f"the page did not respond for {self._watchdog.limit_s:g} s (a script "
                        "that never yields, or a server that holds its answer), so chromium "
                        "was ended")
        kill_chromium(self._temp.name)

    def _call(self, what: str, fn: Any, hide: tuple[str, ...] = ()) -> Any:
        """Run a Playwright call; a dead browser or a Playwright error becomes an EnvError
        (whose message never shows the strings in ``hide``)."""
        from playwright.sync_api import Error as PlaywrightError

        if self._dead is not None:
            raise EnvGone(f"{self._dead}; start a new browser env")
        try:
            with self._watchdog.watch():
                return fn()
        except PlaywrightError as exc:
            if self._dead is not None or not self._browser.is_connected():
                self._mark_dead("the browser closed or crashed")
                raise EnvGone(f"{what} failed: {self._dead}; start a new browser env") from None
            detail = conceal(str(exc), hide).strip()
            first_line = detail.splitlines()[0] if detail else type(exc).__name__
            raise EnvError(f"{what} failed: {first_line}") from None


#: The actions whose pointer events a locked pointer would take.
_POINTER_KINDS = frozenset({"click", "double_click", "right_click", "move", "drag", "scroll"})
_LOCK_BINDING = "__vlagentPointerLocked"
#: Tells the env of each pointer lock a frame takes, through the binding as it was when the
#: frame began (a page cannot swap it), from a listener that runs before any of the page's.
_WATCH_POINTER_LOCK = """(() => {
  const told = window.%s;
  window.addEventListener('pointerlockchange', () => {
    if (document.pointerLockElement) told();
  }, true);
})();""" % _LOCK_BINDING
#: Ends the frame's pointer lock, once the lock is gone (or after a while): true if it held one.
_RELEASE_POINTER = """() => new Promise((done) => {
  if (!document.pointerLockElement) return done(false);
  document.addEventListener('pointerlockchange', () => done(true), {once: true});
  setTimeout(() => done(true), 1000);
  document.exitPointerLock();
})"""


def _first_few(said: list[str], more: Callable[[int], str]) -> list[str]:
    """The first few of ``said``, the others counted by ``more`` (a page that does a thing
    thousands of times would fill the model's context)."""
    if len(said) <= MAX_TOLD:
        return said
    return [*said[:MAX_TOLD], more(len(said) - MAX_TOLD)]


def _blocked_said(who: str, urls: list[str]) -> list[str]:
    """What ``who`` ("before it, the page") tried off the allowed domains."""
    return _first_few(
        [f"{who} tried to open {url}, which is off the allowed domains (blocked)" for url in urls],
        lambda more: f"{who} tried to open {more} more urls off the allowed domains (blocked)")


def _downloads_said(when: str, names: list[str]) -> list[str]:
    """The downloads that started (``when``: "before it, " or ""), each refused: a file nobody
    asked for is not written to this machine."""
    return _first_few(
        [f"{when}a download of {json.dumps(name, ensure_ascii=False)} started, not saved (the "
         "browser env keeps no downloads)" for name in names],
        lambda more: f"{when}{more} more downloads started, none saved")


def _said_too(message: str, did: list[str], before: list[tuple[str, bool]],
              during: list[tuple[str, bool]], downloads: list[str]) -> str:
    """An action's result, with what the page did since the last action (``did``: urls blocked,
    downloads refused; and dialogs answered: "before it") and the dialogs answered and downloads
    refused during it: each "leave this page?" and the first few others by name, the rest
    counted (a page that asks hundreds of times would fill the model's context)."""
    dialogs, more = [], 0
    for when, asked in (("before it, ", before), ("", during)):
        for said, leaving in asked:
            if leaving or len(dialogs) < MAX_TOLD:
                dialogs.append(when + said)
            else:
                more += 1
    if more:
        dialogs.append(f"{more} more dialogs, each closed or answered Cancel")
    return "; ".join([message, *did, *dialogs, *_downloads_said("", downloads)])
