"""Calculator tasks: xcalc (x11-apps), driven by clicking its buttons. Success is the number on its
display, read the way xcalc offers it: a click on the display makes xcalc own the PRIMARY
selection with that number, which the check then asks for over X."""

from __future__ import annotations

import random
import subprocess
import time
from typing import Any, Callable, Iterator

from core.actions import Terminate
from core.results import Score
from envs.base import Env, EnvError
from tasks.base import SolutionStep
from tasks.desktop.programs import DesktopTask, Window, find_window, x_client_env, xdotool

#: xcalc's buttons (its default TI-30 layout): label -> (row, column) in the 11 x 5 grid.
BUTTONS = {
    "AC": (0, 4), "(": (4, 2), ")": (4, 3),
    "7": (7, 1), "8": (7, 2), "9": (7, 3), "*": (7, 4),
    "4": (8, 1), "5": (8, 2), "6": (8, 3), "-": (8, 4),
    "1": (9, 1), "2": (9, 2), "3": (9, 3), "+": (9, 4),
    "0": (10, 1), "=": (10, 4),
}
#: The grid's pitch and the last row's centre above the window's bottom edge, in pixels.
ROW_PITCH, LAST_ROW_FROM_BOTTOM = 30, 17
COLUMNS, ROWS = 5, 11
#: The display (the "LCD") sits in the window's top band.
LCD_FROM_TOP = 25
#: The expressions a task asks for, with their values.
FORMS: dict[str, Callable[[int, int, int], int]] = {
    "{a} * {b} + {c}": lambda a, b, c: a * b + c,
    "{a} * {b} - {c}": lambda a, b, c: a * b - c,
    "({a} + {b}) * {c}": lambda a, b, c: (a + b) * c,
    "({a} - {b}) * {c}": lambda a, b, c: (a - b) * c,
}


def button(window: Window, label: str) -> tuple[int, int]:
    """Where ``label``'s button is, from the calculator window's size."""
    row, column = BUTTONS[label]
    dx = window.width * (2 * column + 1) // (2 * COLUMNS)
    dy = window.height - LAST_ROW_FROM_BOTTOM - ROW_PITCH * (ROWS - 1 - row)
    return dx, dy


def displayed_number(env: Env, window: Window) -> str | None:
    """The calculator's display: click it (xcalc then owns PRIMARY with the number), read the
    selection, and click again (the click also inverts the display; the second undoes that)."""
    from Xlib import X, Xatom
    from Xlib.display import Display

    x, y = window.x + window.width // 2, window.y + LCD_FROM_TOP
    click = ["mousemove", str(x), str(y), "click", "1", "mousemove", "restore"]
    xdotool(env, *click)
    display = Display(x_client_env(env)["DISPLAY"])
    try:
        selection = display.intern_atom("PRIMARY")
        target = display.intern_atom("VLAGENT_SELECTION")
        receiver = display.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        receiver.convert_selection(selection, Xatom.STRING, target, X.CurrentTime)
        display.flush()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            while display.pending_events():
                event = display.next_event()
                if event.type == X.SelectionNotify:
                    if event.property == X.NONE:
                        return None
                    value = receiver.get_full_property(target, X.AnyPropertyType)
                    return value.value.decode() if value is not None else None
            time.sleep(0.02)
        return None
    finally:
        display.close()
        xdotool(env, *click)


class CalculatorCompute(DesktopTask):
    name = "desktop/calculator-compute"
    goal_template = "Use the calculator to compute {expression} and leave the result on its display."
    tags = frozenset({"xcalc", "click", "math", "medium"})
    max_steps = 16
    keywords = ("xcalc", "calculate", "calculation", "arithmetic")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        while True:  # xcalc starts showing 0: a result of 0 would be solved before any step
            numbers = {"a": rng.randint(11, 99), "b": rng.randint(2, 9), "c": rng.randint(3, 60)}
            form = rng.choice(sorted(FORMS))
            if FORMS[form](**numbers) != 0:
                return {"form": form, **numbers, "expression": form.format(**numbers)}

    @property
    def result(self) -> int:
        p = self.params
        return FORMS[p["form"]](p["a"], p["b"], p["c"])

    def start(self, env: Env) -> None:
        self.launch(env, ["xcalc", "-geometry", "+200+120"], "xcalc")

    def closed(self) -> bool:
        """Whether the agent quit xcalc (button 3 on AC, or the q key, is its "off")."""
        return bool(self._processes) and all(p.poll() is not None for p in self._processes)

    def verdict(self, env: Env, answer: str | None) -> Score:
        from Xlib.error import ConnectionClosedError, DisplayError, XError

        # A quit calculator shows no result: the agent's failure, not a runtime error (which a
        # bench resume would run again). A running one that cannot be read is the harness's.
        if self.closed():
            return Score(success=False, reason="the calculator was closed: no result is shown")
        try:
            shown = displayed_number(env, find_window(env, "xcalc", timeout_s=2))
        except EnvError:
            if self.closed():  # it quit while the check looked for its window
                return Score(success=False, reason="the calculator was closed: no result is shown")
            raise
        except (OSError, subprocess.SubprocessError, DisplayError, ConnectionClosedError,
                XError) as exc:
            raise EnvError(f"could not read the calculator's display: {exc}") from None
        if shown is None:
            raise EnvError("the calculator did not hand over its display's number (is xcalc "
                           "hung?)")
        try:
            right = float(shown) == self.result
        except ValueError:
            right = False
        reason = f"the display shows {shown!r}, expected {self.result}"
        return Score(success=right, reason=reason)

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        window = find_window(env, "xcalc")
        for label in [*self.params["expression"].replace(" ", ""), "="]:
            dx, dy = button(window, label)
            yield SolutionStep(window.click(dx, dy), f"Press {label}.")
        yield SolutionStep(Terminate(status="success"), f"The display shows {self.result}.")
