"""What phone tasks do through the device: find elements on screen, read and write app state.

Scripted solutions find elements by resource-id in the live accessibility tree
(``AndroidEnv.ui_tree``), so they follow the real layout instead of hard-coded pixels. Start
states and success checks go through the app's own state, as android_world goes through an app's
database with adb and sqlite: on the virtual phone ``vphone state PACKAGE`` reads it,
``vphone state set PACKAGE JSON`` writes it, and ``vphone reset`` restores every app's initial
state (the app's ``app.json``).
"""

from __future__ import annotations

import json
import shlex
import time
from typing import TYPE_CHECKING, Any, Callable

from core.actions import Tap
from envs.base import EnvError
from envs.ui_tree import UiNode
from tasks.base import Task

if TYPE_CHECKING:
    from envs.android import AndroidEnv

FLIGHTS = "com.vlagent.flights"
NOTES = "com.vlagent.notes"
SETTINGS = "com.vlagent.settings"
CONTACTS = "com.vlagent.contacts"
MESSAGES = "com.vlagent.messages"


class PhoneTask(Task):
    """A task on the virtual phone: every episode starts from the apps' initial states, at home;
    a subclass's ``initialize`` calls this one, then writes the state its params need."""

    env = "android"

    def initialize(self, env: "AndroidEnv") -> None:  # type: ignore[override]
        reset_apps(env)


def tap(node: UiNode) -> Tap:
    x, y = node.center
    return Tap(x=x, y=y)


def wait_for(
    env: "AndroidEnv",
    want: Callable[[list[UiNode]], list[UiNode]],
    what: str,
    timeout_s: float = 10.0,
) -> list[UiNode]:
    """Poll the screen's tree until ``want`` finds something; an EnvError names ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = want(list(env.ui_tree().walk()))
        if found:
            return found
        if time.monotonic() >= deadline:
            raise EnvError(f"{what} did not appear on the screen within {timeout_s:g}s")
        time.sleep(0.1)


def find(env: "AndroidEnv", resource_id: str, timeout_s: float = 10.0) -> UiNode:
    """The element with this resource-id, once it is on the screen."""
    return wait_for(env, lambda nodes: [n for n in nodes if n.resource_id == resource_id],
                    f"the element {resource_id!r}", timeout_s)[0]


def app_state(env: "AndroidEnv", package: str) -> dict[str, Any]:
    """An app's state as JSON, through the virtual phone's ``vphone state``."""
    out = env.shell(f"vphone state {shlex.quote(package)}")
    try:
        state = json.loads(out)
    except json.JSONDecodeError:
        raise EnvError(f"`vphone state {package}` did not print JSON (is this the virtual phone?): "
                       f"{out.strip()[:200]!r}") from None
    if not isinstance(state, dict):
        raise EnvError(f"`vphone state {package}` printed {type(state).__name__}, not an object")
    return state


def set_app_state(env: "AndroidEnv", package: str, state: dict[str, Any]) -> None:
    """Replace an app's state (``vphone state set``); the app, if open, is stopped first."""
    _run(env, f"vphone state set {shlex.quote(package)} {shlex.quote(json.dumps(state))}",
         f"`vphone state set {package}`")


def reset_apps(env: "AndroidEnv") -> None:
    """Reset every app's state and go home; only the virtual phone has ``vphone``."""
    _run(env, "vphone reset", "`vphone reset`")


def _run(env: "AndroidEnv", command: str, what: str) -> None:
    out = env.shell(f"{command}; echo rc=$?")
    if not out.rstrip().endswith("rc=0"):
        raise EnvError(f"{what} failed (tasks with a seeded state need the virtual phone: "
                       f"--device virtual): {out.strip()[:200]!r}")
