"""The accessibility tree of a phone screen, as ``uiautomator dump`` writes it, read once.

``parse_hierarchy`` turns the dump's XML into ``UiNode``s. The android env reads the tree with
``AndroidEnv.ui_tree()`` (and an observation can carry it); tasks and tools walk the nodes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Iterator

_BOUNDS = re.compile(r"\[(-?\d+),(-?\d+)\]\[(-?\d+),(-?\d+)\]")


class UiTreeError(ValueError):
    """The text is not a uiautomator hierarchy."""


@dataclass(frozen=True)
class UiNode:
    """One ``<node>``: what it shows, what it does, and where it is (physical pixels)."""

    resource_id: str = ""
    text: str = ""
    content_desc: str = ""
    class_name: str = ""
    package: str = ""
    bounds: tuple[int, int, int, int] = (0, 0, 0, 0)  # x1, y1, x2, y2
    clickable: bool = False
    checkable: bool = False
    checked: bool = False
    focused: bool = False
    password: bool = False  # a password field: the safety gate asks before typing there
    children: tuple["UiNode", ...] = ()

    @property
    def center(self) -> tuple[int, int]:
        x1, y1, x2, y2 = self.bounds
        return (x1 + x2) // 2, (y1 + y2) // 2

    def walk(self) -> Iterator["UiNode"]:
        """This node and every node below it, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, resource_id: str) -> list["UiNode"]:
        return [n for n in self.walk() if n.resource_id == resource_id]


def parse_hierarchy(dump: str) -> UiNode:
    """The tree of a dump (the ``<hierarchy>`` becomes a root node holding the top nodes).

    Text around the XML (``uiautomator dump /dev/tty`` appends a status line) is ignored. Nodes
    whose bounds do not parse keep (0, 0, 0, 0), so they can never be tapped by mistake.
    """
    start, end = dump.find("<?xml"), dump.rfind("</hierarchy>")
    if end < 0:
        raise UiTreeError(f"not a uiautomator hierarchy: {dump.strip()[:200]!r}")
    xml = dump[max(start, 0):end + len("</hierarchy>")]
    try:
        root = ET.fromstring(xml.encode())
    except ET.ParseError as exc:
        raise UiTreeError(f"the uiautomator hierarchy is not valid XML: {exc}") from None
    return UiNode(children=tuple(_node(child) for child in root.findall("node")))


def _node(element: ET.Element) -> UiNode:
    match = _BOUNDS.fullmatch(element.get("bounds", ""))
    bounds = tuple(int(v) for v in match.groups()) if match else (0, 0, 0, 0)

    def flag(name: str) -> bool:
        return element.get(name) == "true"

    return UiNode(
        resource_id=element.get("resource-id", ""),
        text=element.get("text", ""),
        content_desc=element.get("content-desc", ""),
        class_name=element.get("class", ""),
        package=element.get("package", ""),
        bounds=bounds,  # type: ignore[arg-type]
        clickable=flag("clickable"),
        checkable=flag("checkable"),
        checked=flag("checked"),
        focused=flag("focused"),
        password=flag("password"),
        children=tuple(_node(child) for child in element.findall("node")),
    )
