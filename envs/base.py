"""The Env protocol: what every environment (android, desktop, browser) offers the agent loop.

An env captures frames, executes typed actions, and reports what happened. The shared behaviour
(settling before an observation, refusing unsupported kinds, timing) lives here so each adapter
only implements ``capture`` and ``_execute``.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from PIL import Image, ImageChops

from core.actions import Action, check_on_screen
from core.kinds import CONTROL_KINDS, KINDS, FormFactor
from core.results import ActionResult
from core.text import pieces
from envs.ui_tree import UiNode

#: A finger or pointer that moves less than this (screenshot px) in each direction presses where
#: it landed instead of swiping or dragging, like Android's touch slop (8 dp at 480 dpi).
TOUCH_SLOP = 24
#: Kinds that press on the element at their point.
PRESS_KINDS = frozenset({"tap", "click", "double_click", "long_press", "right_click"})


class EnvError(RuntimeError):
    """The environment cannot be used: a device went away, a browser crashed, a tool is missing."""


class EnvGone(EnvError):
    """The env itself is gone (its browser closed or crashed, its device or adb server cannot
    be reached): nothing more can be done or looked up on it, so no caller reads this as a
    mere "cannot tell" (the safety gate's lookup of an element, for one)."""


@dataclass
class Observation:
    """One screenshot at the device's native resolution, plus what else the env knows.

    ``ui`` is the screen's accessibility tree, for envs that can read one and were asked to
    (``AndroidEnv(observe_ui=True)``); it costs a ``uiautomator dump`` per observation.
    """

    image: Image.Image
    extras: dict[str, Any] = field(default_factory=dict)
    ui: UiNode | None = None
    #: ``image`` as the device encoded it, when it sent a PNG (the recorder writes it as is).
    png: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.size


@dataclass(frozen=True)
class ElementInfo:
    """What the safety gate needs to know about one element on the screen."""

    text: str  # its visible text or label (a button's caption, a field's hint)
    password: bool = False
    #: The env could not look at it (a frame it cannot inspect): its text and kind are unknown,
    #: and the safety gate treats pressing or typing into it as sensitive.
    opaque: bool = False
    #: Typed text goes into it (a text input, a text area, an editable node). Typed into any
    #: other focused element, a space or a line break presses it, as a tap would.
    field: bool = False
    #: What a read-only text input holds (a page may make one a button: "Delete account"), kept
    #: apart from ``text``: the safety gate's rules read it, its reasons never quote it, since
    #: it may be a secret typed before the field was locked, reshaped by the page.
    held: str = ""


@dataclass(frozen=True)
class AppTarget:
    """What an ``open_app`` of some name would open, as the env resolves it (the safety gate
    judges this, not the name the model wrote)."""

    #: The package (or program) it starts; None when the env opens it some other way.
    package: str | None = None
    #: The label of the icon it presses, when it opens the app by its label.
    label: str | None = None


#: What a pointer action did, for the model to read. No coordinates: the env's are screenshot
#: pixels, and the model writes its own (a 0-1000 grid, a resized screenshot's pixels), so a
#: point in the feedback would be in a space its prompt never describes.
POINTER_DONE = {"click": "clicked", "double_click": "double-clicked",
                "right_click": "right-clicked", "move": "moved the pointer", "drag": "dragged",
                "tap": "tapped", "swipe": "swiped"}


def typed_done(text: str) -> str:
    """What a ``type`` that typed ``text`` did, said by its length alone (the text may hold a
    secret's value), each line break counted once, as it is typed (``one_line_break_each``)."""
    count = len(one_line_break_each(text))
    return f"typed {count} character{'' if count == 1 else 's'}"


def scroll_side(direction: str, width: float, height: float) -> float:
    """The side of the screen a scroll in ``direction`` runs along: a scroll without an amount
    goes half of it (``Scroll``), left and right half the width, up and down half the height."""
    return height if direction in ("up", "down") else width


def one_line_break_each(text: str) -> str:
    """``text`` with every line break as one ``"\\n"``: a ``"\\r\\n"`` pair is one line
    break, and so is a lone ``"\\r"`` (as HTML forms and most editors read them). Each env types
    the result, so a ``type`` action's line breaks press Enter once each everywhere."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


WITHHELD = "(not shown: it quoted the typed text)"


def conceal(message: str, parts: Iterable[str]) -> str:
    """``message`` without ``parts``, for an env's error about typing, which gets the typed text
    and what carried it to the device (such as a command's argument), any of which may hold a
    secret's value. Each part, and its ``repr`` and JSON escaped forms, is replaced by "…";
    if any piece of ``CONCEALED_PIECE`` characters of them still shows (the message quoted one
    cut short, or escaped some other way), the whole message is ``WITHHELD``."""
    forms = {form for part in parts if part
             for form in (part, repr(part)[1:-1], json.dumps(part)[1:-1],
                          json.dumps(part, ensure_ascii=False)[1:-1])}
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form, "…")
    if any(piece in message for piece in pieces(forms)):
        return WITHHELD
    return message



@dataclass
class SettleConfig:
    """How ``observe`` waits for the screen to stop changing."""

    timeout_s: float = 3.0
    poll_interval_s: float = 0.05


def frames_equal(a: Image.Image, b: Image.Image) -> bool:
    if a.size != b.size or a.mode != b.mode:
        return False
    return ImageChops.difference(a, b).getbbox() is None


class Env(ABC):
    """Base class of all environments. Use it as a context manager so ``close`` always runs."""

    #: What kind of device this is; dialects read it, and it fixes the action kinds.
    form_factor: ClassVar[FormFactor]
    name: str = "env"

    @property
    def action_kinds(self) -> frozenset[str]:
        """The kinds this env executes; anything else is refused without touching the device."""
        return KINDS[self.form_factor]

    def __init__(self, settle: SettleConfig | None = None) -> None:
        self.settle = settle or SettleConfig()
        #: The size of the last screenshot observed: actions come in its pixels.
        self.seen_size: tuple[int, int] | None = None

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def capture(self) -> Image.Image:
        """Grab one RGB frame at native resolution, immediately."""

    @abstractmethod
    def _execute(self, action: Action) -> str:
        """Perform a supported action; return a short message, raise EnvError on failure."""

    def extras(self) -> dict[str, Any]:
        """Env-specific facts for the observation: foreground app, url, title..."""
        return {}

    def press_point(self, action: Action) -> tuple[int, int] | None:
        """Where ``action`` presses an element as this env performs it, or None: a tap or click
        at its point, and a swipe or drag that presses (``gesture_press``)."""
        if action.kind in PRESS_KINDS:
            return action.x, action.y
        if action.kind in ("swipe", "drag"):
            return self.gesture_press((action.x, action.y), (action.x2, action.y2))
        return None

    def gesture_press(self, start: tuple[int, int], end: tuple[int, int]
                      ) -> tuple[int, int] | None:
        """``start`` where a finger or the mouse moving from ``start`` to ``end`` presses the
        element it went down on, else None: it moves less than ``TOUCH_SLOP``, or it ends on
        the element it started on. Android keeps a view pressed until the finger leaves it and
        clicks it on the way up (unless a scrolling parent takes the gesture), and a browser
        clicks the element where the button went down and came up. Ends that cannot be looked
        at may be on one element: ``start``."""
        (x1, y1), (x2, y2) = start, end
        if abs(x2 - x1) < TOUCH_SLOP and abs(y2 - y1) < TOUCH_SLOP:
            return start
        try:
            pressed = self.element_at(x1, y1)
            return start if pressed is not None and pressed == self.element_at(x2, y2) else None
        except EnvError:
            return start

    def element_at(self, x: int, y: int) -> ElementInfo | None:
        """The element under screenshot pixel (x, y); None where the env cannot tell."""
        return None

    def focused_element(self) -> ElementInfo | None:
        """The element that receives typed text; None where the env cannot tell."""
        return None

    def resolve_app(self, app: str) -> AppTarget | None:
        """What ``open_app(app)`` would open, without opening it; None where the env cannot
        tell (the gate then compares names)."""
        return None

    def reset(self, prepare: Callable[["Env"], None] | None = None) -> Observation:
        """Bring the env to its start state, let ``prepare`` (say, a task's ``initialize``)
        build on it, then observe."""
        if prepare is not None:
            prepare(self)
        return self.observe()

    def close(self) -> None:
        """Release what the env holds. Safe to call twice."""

    # -- shared behaviour ---------------------------------------------------------------------
    def observe(self) -> Observation:
        """Poll frames until two consecutive ones match, or the settle timeout passes (counted
        from the first frame: a capture that waited, for a page whose slow server answered at
        last, takes none of the time the screen has to settle)."""
        start = time.monotonic()
        previous = self.capture()
        deadline = time.monotonic() + self.settle.timeout_s
        settled = False
        while True:
            if time.monotonic() >= deadline:
                current = previous
                break
            time.sleep(self.settle.poll_interval_s)
            current = self.capture()
            if frames_equal(previous, current):
                settled = True
                break
            previous = current
        extras = settle_extras(settled, start)
        extras.update(self.extras())
        self.seen_size = current.size
        return Observation(image=current.convert("RGB"), extras=extras)

    def execute(self, action: Action) -> ActionResult:
        """Run ``action``; unsupported kinds, points off the last screenshot observed and env
        errors come back as a failed result."""
        start = time.monotonic()
        if action.kind not in self.action_kinds:
            supported = ", ".join(sorted(self.action_kinds))
            return ActionResult(
                ok=False,
                message=f"the {self.name} env does not support '{action.kind}'; "
                f"supported: {supported}",
            )
        if self.seen_size is not None:
            # A dialect refuses such a point; a caller of its own would reach a device that
            # clamps it to an edge (X11) or hit nothing and be told it was done.
            try:
                check_on_screen(action, self.seen_size)
            except ValueError as exc:
                return ActionResult(ok=False, message=f"{exc} the last screenshot showed: "
                                    "nothing was done")
        try:
            message = self._common(action) if action.kind in CONTROL_KINDS else self._execute(action)
        except EnvError as exc:
            return ActionResult(ok=False, message=str(exc), elapsed_ms=_ms_since(start))
        return ActionResult(ok=True, message=message or "", elapsed_ms=_ms_since(start))

    def _common(self, action: Action) -> str:
        # A wait the model asked for is an action, not a settle heuristic, so it is a plain sleep.
        if action.kind == "wait":
            time.sleep(action.seconds)
            return f"waited {action.seconds:g}s"
        return ""  # answer and terminate end the episode; the device is not touched

    def __enter__(self) -> "Env":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settle_extras(settled: bool, start: float) -> dict[str, Any]:
    """What every observation says about settling; ``start`` is when observe began (monotonic)."""
    return {"settled": settled, "settle_ms": _ms_since(start), "timestamp": time.time()}


def _ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)
