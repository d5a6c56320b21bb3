"""The phone's display: headless chromium (Playwright's async API, on the phone's loop), a page
per running app, as Android keeps an app's task: the page shown is the foreground app's, and an
app brought back (from the launcher, ``am start``) is shown as it was left.

A 360x800 CSS viewport at device scale factor 3 gives 1080x2400 physical pixels. Coordinates
arrive in physical pixels, as on a device, and are divided by the scale for the mouse. Apps are
served from ``ORIGIN`` out of ``envs/virtual_phone/apps``; every other request is aborted, so the phone never
touches the network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.chromium import chromium_temp, launch_chromium_context, remove_temp
from envs.virtual_phone.catalog import APPS_DIR, ORIGIN

WIDTH, HEIGHT, SCALE = 360, 800, 3
PHYSICAL = (WIDTH * SCALE, HEIGHT * SCALE)


def _css(x: float, y: float) -> tuple[int, int]:
    """The CSS pixel that holds physical pixel (x, y), as ``BrowserEnv._css`` finds it: chromium
    hit-tests a fractional point (CSS 199.33) as part of the next pixel, where an element that
    starts at CSS 200 (physical 600) would take a tap on physical 598."""
    return math.floor(x / SCALE), math.floor(y / SCALE)

#: Collects the visible text and interactive elements for ``uiautomator dump`` (CSS pixels).
_HIERARCHY_JS = """() => {
  const interactive = (el) => el.matches(
    'a[href], button, input, textarea, select, [role=button], [role=switch], [onclick], ' +
    '[tabindex]');
  const visible = (el, r) => {
    if (r.width <= 0 || r.height <= 0) return false;
    if (r.bottom <= 0 || r.right <= 0 || r.top >= innerHeight || r.left >= innerWidth) return false;
    const s = getComputedStyle(el);
    return s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0';
  };
  const nodes = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (['SCRIPT', 'STYLE', 'OPTION'].includes(el.tagName)) continue;
    const r = el.getBoundingClientRect();
    if (!visible(el, r)) continue;
    const isInteractive = interactive(el);
    if (!isInteractive && el.parentElement.closest(
      'a[href], button, [role=button], [role=switch], [onclick]')) continue;
    let text;
    // A password field's text is masked, as Android's accessibility reports it.
    const password = el.matches('input[type=password]');
    if (password) text = '\u2022'.repeat(el.value.length);
    else if (el.matches('input, textarea')) text = el.type === 'checkbox' ? '' : el.value;
    else if (isInteractive) text = el.innerText.trim();
    else text = [...el.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent).join('').trim();
    if (!isInteractive && !text) continue;
    const checkable = el.matches('input[type=checkbox], [role=switch]');
    let cls = 'android.widget.TextView';
    if (checkable) cls = 'android.widget.Switch';
    else if (el.matches('input, textarea')) cls = 'android.widget.EditText';
    else if (isInteractive) cls = 'android.widget.Button';
    nodes.push({
      text, cls, checkable,
      id: el.id || '',
      desc: el.getAttribute('aria-label') || '',
      clickable: isInteractive,
      checked: checkable && (el.checked === true || el.getAttribute('aria-checked') === 'true'),
      focused: document.activeElement === el,
      password,
      bounds: [Math.max(0, r.left), Math.max(0, r.top),
               Math.min(innerWidth, r.right), Math.min(innerHeight, r.bottom)],
    });
  }
  return nodes;
}"""


#: Runs first in every document: a click on a link to another app (a launcher icon) does not
#: load that app over this one; the phone opens it in its own page (``_follow_link``), as
#: Android starts an app in its task or brings it back as it was left.
_LINKS_JS = """(() => {
  const app = (path) => path.split('/')[1];
  addEventListener('click', (event) => {
    const link = event.target.closest && event.target.closest('a[href]');
    if (!link) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || app(url.pathname) === app(location.pathname)) return;
    event.preventDefault();
    window.__vphoneOpen = url.href;
  }, true);
})()"""
#: The app a click asked for (once), or null.
_OPENED_JS = "() => { const url = window.__vphoneOpen || null; window.__vphoneOpen = null; " \
             "return url; }"


#: Runs first in every document: counts what can change the pixels (DOM mutations, scrolling,
#: focus, state calls in flight), so the phone can tell a still screen without comparing frames.
_CHANGES_JS = """(() => {
  const changes = {id: Math.random(), count: 0, last: performance.now(), pending: 0};
  const mark = () => { changes.count++; changes.last = performance.now(); };
  Object.defineProperty(window, '__vphoneChanges', {value: changes});
  new MutationObserver(mark).observe(document, {
    subtree: true, childList: true, attributes: true, characterData: true});
  for (const type of ['scroll', 'focusin', 'focusout', 'input', 'load', 'transitionrun',
                      'animationstart']) {
    addEventListener(type, mark, {capture: true, passive: true});
  }
  const binding = window.vphoneState;
  if (binding) {
    window.vphoneState = (...args) => {
      changes.pending++;
      mark();
      return binding(...args).finally(() => { changes.pending--; mark(); });
    };
  }
})()"""

#: [document id, changes, ms since the last one, anything moving or loading]
_STILLNESS_JS = """() => {
  const c = window.__vphoneChanges;
  if (!c) return [Math.random(), 0, 1e9, false];  // a page without the counter: never cached
  const moving = c.pending > 0 || document.readyState !== 'complete' ||
    document.fonts.status !== 'loaded' ||
    document.getAnimations().some((a) => a.playState === 'running');
  return [c.id, c.count, performance.now() - c.last, moving];
}"""


@dataclass(frozen=True)
class Stillness:
    """What the page reports about its pixels: ``version`` changes whenever they may have."""

    version: tuple[float, int]
    quiet_ms: float  # since the last change
    moving: bool  # an animation runs, a state call or a load is in flight


class PhoneDisplay:
    """The chromium page and the gestures on it; every method runs on the phone's event loop."""

    def __init__(self, apps_dir: Path = APPS_DIR) -> None:
        self.apps_dir = apps_dir
        self._playwright: Any = None
        self._context: Any = None
        self.page: Any = None  # the one shown
        self._cdp: Any = None  # the shown page's DevTools session
        #: Each running app's page and DevTools session, by the key ``show`` was given, in
        #: z-order (the one shown last is on top).
        self._tasks: dict[str, tuple[Any, Any]] = {}
        self._on_open: Callable[[str], Awaitable[None]] | None = None
        self._blank: Any = None  # the page start opened, closed once an app is shown
        self._temp = chromium_temp()

    async def start(self, on_state: Callable[[str, str, Any], Any],
                    on_open: Callable[[str], Awaitable[None]]) -> None:
        """Launch chromium; ``on_state(url, op, value)`` answers the apps' ``vphoneState`` calls,
        and ``on_open(url)`` starts the app at ``url`` that a page's link (a launcher icon)
        would have loaded over the page: the app is brought to the front in a page of its own."""
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        # Its profile in the folder of its own, which a later process removes should this one
        # be killed: Playwright would make one in the system's temporary folder otherwise.
        context = self._context = await launch_chromium_context(
            self._playwright, self._temp.name,
            viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=SCALE,
        )
        blank = context.pages
        await context.route("**/*", self._serve)
        await context.expose_binding(
            "vphoneState", lambda source, op, value=None: on_state(source["frame"].url, op, value)
        )
        await context.add_init_script(_CHANGES_JS)
        await context.add_init_script(_LINKS_JS)
        self._on_open = on_open
        self.page = self._blank = await context.new_page()  # until the first app is shown
        for page in blank:  # the one a persistent context starts with
            await page.close()

    def on_crash(self, callback: Callable[[], None]) -> None:
        """``callback()`` once chromium is gone (crashed, killed, or closed by ``close``)."""
        self._context.on("close", lambda _context: callback())

    async def close(self) -> None:
        closed = True  # chromium has exited, or never started
        if self._context is not None:
            try:
                await self._context.close()
            except Exception:  # noqa: BLE001 - already gone (a Ctrl-C ended its driver)
                closed = False
        if self._playwright is not None:
            with contextlib.suppress(Exception):  # already gone is fine when closing
                await self._playwright.stop()
        # A chromium that was not closed may still be writing its profile into the folder as
        # it goes.
        await asyncio.to_thread(remove_temp, self._temp, chromium_closed=closed)

    async def _serve(self, route: Any, request: Any) -> None:
        url = request.url.split("#", 1)[0].split("?", 1)[0]
        if not url.startswith(ORIGIN + "/"):
            await route.abort("blockedbyclient")
            return
        path = (self.apps_dir / url[len(ORIGIN) + 1:]).resolve()
        if not path.is_file() or not path.is_relative_to(self.apps_dir.resolve()):
            await route.fulfill(status=404, body="not found")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        await route.fulfill(status=200, body=path.read_bytes(), content_type=content_type)

    # -- navigation and state ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.page.url

    async def show(self, task: str, url: str, fresh: bool = False) -> None:
        """Bring ``task``'s page to the front, opening it at ``url`` where it has none (or
        where ``fresh``: the launcher's Home shows its first screen)."""
        entry = self._tasks.pop(task, None)  # put back last: the tasks run in z-order
        if entry is None:
            page = await self._context.new_page()
            entry = (page, await self._context.new_cdp_session(page))
            fresh = True
        self._tasks[task] = entry
        if fresh:
            await entry[0].goto(url, wait_until="load")
        self.page, self._cdp = entry
        await self.page.bring_to_front()
        if self._blank is not None:
            await self._blank.close()
            self._blank = None

    def to_back(self, task: str) -> str | None:
        """Move ``task`` to the bottom of the z-order (Back from its first page, as Android 12
        and later do): the task now on top, which was under it, or None."""
        if task in self._tasks:
            self._tasks = {task: self._tasks[task]} | {
                name: entry for name, entry in self._tasks.items() if name != task}
        return next(reversed(self._tasks), None) if len(self._tasks) > 1 else None

    async def end(self, task: str) -> None:
        """Close ``task``'s page (the app stopped): shown again, it starts afresh. Not the
        page shown: another is shown first."""
        entry = self._tasks.get(task)
        if entry is None or entry[0] is self.page:
            return
        del self._tasks[task]
        with contextlib.suppress(Exception):  # already gone is fine when closing
            await entry[0].close()

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        """Evaluate in the page, retrying while a navigation replaces the document."""
        for attempt in range(50):
            try:
                await self.page.wait_for_load_state("load")
                return await self.page.evaluate(script, arg)
            except Exception as exc:  # noqa: BLE001 - only navigation races are retried
                if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
        raise RuntimeError("the page kept navigating")

    async def hierarchy(self) -> list[dict[str, Any]]:
        return await self.evaluate(_HIERARCHY_JS)

    async def stillness(self) -> Stillness:
        try:
            doc, count, quiet_ms, moving = await self.page.evaluate(_STILLNESS_JS)
        except Exception as exc:  # noqa: BLE001 - only a navigation race is expected here
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            return Stillness((0, 0), 0, True)  # a new document is on its way
        return Stillness((doc, count), quiet_ms, moving)

    # -- capture ------------------------------------------------------------------------------
    async def png(self) -> bytes:
        # Straight CDP at scale 3 gives the same pixels as page.screenshot at about half the
        # cost. The apps' CSS hides the caret, so a blinking caret cannot keep frames changing.
        shot = await self._cdp.send("Page.captureScreenshot", {
            "format": "png", "optimizeForSpeed": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": HEIGHT, "scale": SCALE},
        })
        return base64.b64decode(shot["data"])

    # -- gestures (physical pixels) -----------------------------------------------------------
    async def tap(self, x: float, y: float) -> None:
        await self.page.mouse.click(*_css(x, y))
        await self._follow_link()

    async def press_hold(self, x: float, y: float, duration_s: float) -> None:
        mouse = self.page.mouse
        await mouse.move(*_css(x, y))
        await mouse.down()
        await asyncio.sleep(duration_s)  # the gesture's own length, as the command asked
        await mouse.up()
        await self._follow_link()

    async def _follow_link(self) -> None:
        """Open the app a click just asked for (``_LINKS_JS``), before the gesture's command
        ends: a command after it finds that app in front, as on a device."""
        url = await self.evaluate(_OPENED_JS)
        if url and self._on_open is not None:
            await self._on_open(url)

    async def scroll(self, x: float, y: float, dx: float, dy: float) -> None:
        """Scroll the content under (x, y) by (dx, dy) physical pixels."""
        await self.page.mouse.move(*_css(x, y))
        await self.page.mouse.wheel(dx / SCALE, dy / SCALE)

    async def type_keys(self, text: str) -> None:
        await self.page.keyboard.type(text)

    async def insert_text(self, text: str) -> None:
        await self.page.keyboard.insert_text(text)

    async def press(self, key: str) -> None:
        await self.page.keyboard.press(key)
        await self._follow_link()  # Enter on a focused link clicks it
