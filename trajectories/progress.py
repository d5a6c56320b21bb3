"""Progress over long work on trajectories (hundreds of steps to draw, thousands of episodes to
export): the commands pass a tracker that draws a bar; called from code, nothing is shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: (items, what is being done) -> the same items, in order, reporting each as it is reached.
Track = Callable[[Sequence[Any], str], Iterable[Any]]


def untracked(items: Sequence[Any], label: str) -> Iterable[Any]:
    return items
