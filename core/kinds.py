"""Form factors and the action kinds each one offers, each set spelled once.

An env declares its form factor; a dialect reads it to choose its prompt (a phone's or a
computer's) and to tell a phone's tap from a computer's click, which some formats write alike.
"""

from __future__ import annotations

from typing import Literal, get_args

from core.actions import ACTION_CLASSES

FormFactor = Literal["phone", "computer", "browser"]
FORM_FACTORS: tuple[FormFactor, ...] = get_args(FormFactor)

#: Every action kind there is.
ALL_KINDS: frozenset[str] = frozenset(ACTION_CLASSES)
#: Kinds every env handles alike without touching the device: waiting and ending the episode.
CONTROL_KINDS: frozenset[str] = frozenset({"wait", "answer", "terminate"})
#: Kinds that end an episode.
FINAL_KINDS: frozenset[str] = frozenset({"answer", "terminate"})

_TOUCH = frozenset({"tap", "long_press", "swipe", "scroll", "type", "key", "home", "back",
                    "enter", "open_app"})
_MOUSE_AND_KEYBOARD = frozenset({"click", "double_click", "right_click", "move", "drag", "scroll",
                                 "type", "key", "hotkey"})

#: The kinds a device of each form factor executes.
KINDS: dict[FormFactor, frozenset[str]] = {
    "phone": _TOUCH | CONTROL_KINDS,
    "computer": _MOUSE_AND_KEYBOARD | CONTROL_KINDS,
    "browser": _MOUSE_AND_KEYBOARD | {"navigate", "back"} | CONTROL_KINDS,
}
