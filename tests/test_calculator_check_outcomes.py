"""desktop/calculator-compute's check tells the agent's doing from the harness failing to look.

- The agent can quit xcalc (button 3 on AC, or the ``q`` key, both xcalc's own "off"): then no
  result is on a display, and the episode is a failure of the agent, not a runtime error that a
  bench resume would run again.
- A calculator that does not answer when the check asks for its display (hung, or the X
  connection failing) is a check that could not read the state: an EnvError (the episode's
  status ``error``), never a failure the agent is blamed for.
"""

from __future__ import annotations

import os
import signal

import pytest

from core.actions import RightClick
from envs.base import EnvError
from tasks.desktop.calculator import button
from tasks.desktop.programs import find_window, wait_until
from tasks.registry import get_task


@pytest.fixture
def desktop(desktop_programs):
    from envs.desktop import DesktopEnv
    from envs.xvfb import Xvfb

    with Xvfb() as display, DesktopEnv(display=display.display,
                                       xauthority=display.xauthority) as env:
        yield env


@pytest.fixture
def calculator(desktop):
    task = get_task("desktop/calculator-compute", seed=5)
    task.initialize(desktop)
    try:
        yield task
    finally:
        for process in task._processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
        task.tear_down(desktop)


def test_an_agent_that_quits_the_calculator_fails_the_task(desktop, calculator):
    window = find_window(desktop, "xcalc")
    # Button 3 on AC is xcalc's "off": the program exits.
    desktop.execute(RightClick(**dict(zip("xy", _at(window, "AC")))))
    wait_until(lambda: all(p.poll() is not None for p in calculator._processes), "xcalc quitting")
    score = calculator.check(desktop, None)  # no EnvError: the agent closed it
    assert not score.success and score.reward == 0
    assert "closed" in score.reason or "quit" in score.reason or "not running" in score.reason


def test_a_calculator_that_does_not_answer_is_an_error_not_a_failure(desktop, calculator):
    assert not calculator.check(desktop, None).success  # it reads "0" while xcalc runs
    (process,) = calculator._processes
    os.kill(process.pid, signal.SIGSTOP)  # the window stays mapped, but nothing answers
    with pytest.raises(EnvError):
        calculator.check(desktop, None)


def _at(window, label: str) -> tuple[int, int]:
    dx, dy = button(window, label)
    return window.x + dx, window.y + dy
