"""Reading a phone's screen the way Android tools do: ``uiautomator dump`` and app state over adb.

Scripted solutions find elements by resource-id in the live hierarchy, so they follow the real
layout instead of hard-coded pixels; success checks read the app's own state
(``vphone state PACKAGE`` on the virtual phone, as a check would read an app's database).
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from envs.base import EnvError

if TYPE_CHECKING:
    from envs.android import AndroidEnv

_BOUNDS = re.compile(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]")


@dataclass(frozen=True)
class UiNode:
    resource_id: str
    text: str
    content_desc: str
    bounds: tuple[int, int, int, int]  # x1, y1, x2, y2 in physical pixels

    @property
    def center(self) -> tuple[int, int]:
        x1, y1, x2, y2 = self.bounds
        return (x1 + x2) // 2, (y1 + y2) // 2


def to_nodes(elements: Iterable[ET.Element]) -> list[UiNode]:
    """Typed nodes from ``uiautomator dump``'s ``<node>`` elements (those with valid bounds)."""
    nodes = []
    for node in elements:
        match = _BOUNDS.fullmatch(node.get("bounds", ""))
        if match is None:
            continue
        nodes.append(UiNode(
            resource_id=node.get("resource-id", ""),
            text=node.get("text", ""),
            content_desc=node.get("content-desc", ""),
            bounds=tuple(int(v) for v in match.groups()),  # type: ignore[arg-type]
        ))
    return nodes


def shell(env: "AndroidEnv", command: str) -> str:
    return env.shell(command)


def dump(env: "AndroidEnv") -> list[UiNode]:
    return to_nodes(env.ui_nodes())


def wait_for(
    env: "AndroidEnv",
    want: Callable[[list[UiNode]], list[UiNode]],
    what: str,
    timeout_s: float = 10.0,
) -> list[UiNode]:
    """Poll the hierarchy until ``want`` finds something; an EnvError names ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = want(dump(env))
        if found:
            return found
        if time.monotonic() >= deadline:
            raise EnvError(f"{what} did not appear on the screen within {timeout_s:g}s")
        time.sleep(0.1)


def by_id(resource_id: str) -> Callable[[list[UiNode]], list[UiNode]]:
    return lambda nodes: [n for n in nodes if n.resource_id == resource_id]


def find(env: "AndroidEnv", resource_id: str, timeout_s: float = 10.0) -> UiNode:
    return wait_for(env, by_id(resource_id), f"the element {resource_id!r}", timeout_s)[0]


def app_state(env: "AndroidEnv", package: str) -> dict[str, Any]:
    """An app's state as JSON, through the virtual phone's ``vphone state``."""
    out = shell(env, f"vphone state {package}")
    try:
        state = json.loads(out)
    except json.JSONDecodeError:
        raise EnvError(f"`vphone state {package}` did not print JSON (is this the virtual phone?): "
                       f"{out.strip()[:200]!r}") from None
    if not isinstance(state, dict):
        raise EnvError(f"`vphone state {package}` printed {type(state).__name__}, not an object")
    return state


def reset_apps(env: "AndroidEnv") -> None:
    """Reset every app's state and go home; only the virtual phone has ``vphone``."""
    out = shell(env, "vphone reset; echo rc=$?")
    if not out.rstrip().endswith("rc=0"):
        raise EnvError(f"`vphone reset` failed (tasks with a seeded state need the virtual "
                       f"phone: --device virtual): {out.strip()[:200]!r}")
