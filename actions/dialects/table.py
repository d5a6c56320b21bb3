"""Declarative action tables: how a dialect writes each action kind, stated once.

A dialect's table holds one ``Entry`` per way of writing an action: the Action ``kind``, the word
(``name``) the model writes, its ``args`` (argument name, type and the Action field it fills), the
fields the word implies (UI-TARS's ``wait()`` always waits 5 s) and the arguments it carries
verbatim (Qwen2.5-VL's ``system_button`` with ``button="Back"``). From the table come:

- the prompt's list of actions (each dialect formats it in its own model's words),
- ``encode``: Action -> {argument: value}, which the dialect's syntax writes as text (render),
- ``decode``: {argument: value} read from the text -> the fields of an Action (parse).

Coordinates go through the dialect's coordinate space (core.coords), so one table serves both
UI-TARS conventions ([0, 1000) and resized-image pixels). When several entries share a word, the
first whose constant arguments match and whose ``when`` rule accepts the arguments is taken, in
table order (UI-TARS's ``finished(content=...)`` is an answer, ``finished()`` the end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from actions.dialects.base import ParseError
from actions.dialects.reply_syntax import fail, key_names, short, to_point
from core.actions import Action
from core.coords import CoordinateError, CoordSpace
from core.geometry import Screen

ArgType = Literal[
    "point",  # a screen point: field "x" (x, y) or "x2" (x2, y2)
    "text",  # a string field
    "number",  # a number field (seconds)
    "keys",  # a list of key names; one key fills ``key``, several ``keys``
    "spaced_keys",  # key names in one string split on spaces (UI-TARS's hotkey)
    "direction",  # up, down, left or right
    "status",  # success or failure
    "seconds_ms",  # seconds written, milliseconds in the field (long_press time)
    "signed_pixels",  # scroll distance: positive up, negative down (Qwen2.5-VL's computer_use)
]
CHOICES = {"direction": ("up", "down", "left", "right"), "status": ("success", "failure")}


@dataclass(frozen=True)
class Arg:
    name: str  # as the model writes it
    type: ArgType
    field: str  # the Action field it fills (points: "x" or "x2"; keys: "keys")
    required: bool = True
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """Which written arguments an entry stands for, and why it cannot stand for others."""

    test: Callable[[Mapping[str, Any]], bool]
    reason: str


@dataclass(frozen=True)
class Entry:
    kind: str  # the Action kind
    name: str  # the word the model writes
    args: tuple[Arg, ...] = ()
    description: str = ""  # the prompt's line or help text for this word
    implies: Mapping[str, Any] = field(default_factory=dict)  # Action fields the word fixes
    consts: Mapping[str, str] = field(default_factory=dict)  # arguments written verbatim
    fixed: tuple[str, ...] = ()  # Action fields the format cannot carry (they keep defaults)
    when: Rule | None = None  # for a word shared by several entries: which arguments are ours
    note: str = ""  # why the word cannot carry other values of the fields it ``implies``


class Table:
    """A dialect's entries for one form factor (or one tool)."""

    def __init__(self, dialect: str, entries: tuple[Entry, ...]) -> None:
        self.dialect = dialect
        self.entries = entries
        self.kinds = frozenset(e.kind for e in entries)
        self.names = tuple(dict.fromkeys(e.name for e in entries))

    def listed(self, kinds) -> list[Entry]:
        """Entries of these kinds, in table order: what the prompt shows."""
        return [e for e in self.entries if e.kind in kinds]

    # Action -> arguments ----------------------------------------------------------------------
    def entry_for(self, action: Action) -> Entry:
        candidates = [e for e in self.entries if e.kind == action.kind]
        if not candidates:
            raise ValueError(f"the {self.dialect} format cannot express a {action.kind} action "
                             f"here; it has {', '.join(sorted(self.kinds))}")
        for entry in candidates:
            if all(getattr(action, f) == v for f, v in entry.implies.items()):
                return entry
        first = candidates[0]
        f = next(iter(first.implies))
        raise ValueError(f"the {self.dialect} format cannot express {action.kind}.{f}="
                         f"{getattr(action, f)!r}: {first.note or first.name}")

    def encode(self, action: Action, space: CoordSpace, screen: Screen
               ) -> tuple[Entry, dict[str, Any]]:
        """The entry that writes ``action`` and its arguments (points as model numbers)."""
        entry = self.entry_for(action)
        for name in entry.fixed:
            default = type(action).model_fields[name].default
            if getattr(action, name) != default:
                raise ValueError(
                    f"the {self.dialect} format cannot express {action.kind}.{name}="
                    f"{getattr(action, name)!r}; only the default {default!r}"
                )
        args: dict[str, Any] = dict(entry.consts)
        for arg in entry.args:
            value = _encode(arg, action, space, screen, self.dialect)
            if value is None or (not arg.required and arg.type == "text" and value == ""):
                continue
            args[arg.name] = value
        if entry.when is not None and not entry.when.test(args):
            raise ValueError(f"the {self.dialect} format cannot write this {action.kind}: "
                             f"{entry.when.reason}")
        return entry, args

    # Arguments -> Action fields ---------------------------------------------------------------
    def lookup(self, name: str, args: Mapping[str, Any], expected: str,
               unknown: Callable[[str], ParseError]) -> Entry:
        """The entry for word ``name`` with these arguments, or the ParseError ``unknown``."""
        same = [e for e in self.entries if e.name == name]
        if not same:
            raise unknown(name)
        fitting = [e for e in same if all(_same(args.get(k), v) for k, v in e.consts.items())]
        if not fitting:
            key = next(iter(same[0].consts))
            values = ", ".join(e.consts[key] for e in same)
            raise fail(f"unknown {key} {short(args.get(key))}; use {values}", expected)
        return next((e for e in fitting if e.when is None or e.when.test(args)), fitting[-1])

    def decode(self, entry: Entry, args: Mapping[str, Any], space: CoordSpace, screen: Screen,
               expected: str, wording: "Wording") -> dict[str, Any]:
        """The fields of the Action ``entry`` stands for, from the arguments the model wrote."""
        call = wording.call.format(name=entry.name)
        takes = [a.name for a in entry.args]
        for key in args:
            if key not in takes and key not in entry.consts:
                raise fail(wording.extra.format(call=call, arg=key, takes=", ".join(takes)
                                                or "nothing"), expected)
        data: dict[str, Any] = {"kind": entry.kind, **entry.implies}
        for arg in entry.args:
            value = args.get(arg.name)
            if value is None:
                if arg.required:
                    raise fail(wording.missing.format(call=call, arg=arg.name), expected)
                continue
            data.update(_decode(arg, value, entry, space, screen, expected))
        if "keys" in data and entry.kind == "key":
            keys = data.pop("keys")
            if len(keys) != 1:
                raise fail(f"{call} presses one key here, got {len(keys)}", expected)
            data["key"] = keys[0]
        return data


@dataclass(frozen=True)
class Wording:
    """How a dialect's parse errors name a call and its arguments."""

    call: str = "{name}"
    missing: str = "{call} needs the argument {arg!r}"
    extra: str = "{call} has no argument {arg!r}"


def _same(written: Any, const: str) -> bool:
    return isinstance(written, str) and written.strip().lower() == const.lower()


def _encode(arg: Arg, action: Action, space: CoordSpace, screen: Screen, dialect: str) -> Any:
    if arg.type == "point":
        x = getattr(action, arg.field)
        y = getattr(action, "y" if arg.field == "x" else "y2")
        return None if x is None else space.render_int(x, y, screen)
    if arg.type in ("keys", "spaced_keys"):
        keys = [action.key] if action.kind == "key" else list(action.keys)
        if arg.type == "spaced_keys":
            if any(not k or any(c.isspace() for c in k) for k in keys):
                raise ValueError(f"the {dialect} hotkey splits keys on spaces: {keys!r}")
            return " ".join(keys)
        return keys
    if arg.type == "seconds_ms":
        return action.duration_ms / 1000
    if arg.type == "signed_pixels":
        if action.direction not in ("up", "down") or action.amount is None:
            raise ValueError(
                f"the {dialect} format scrolls up or down by a number of pixels; it cannot "
                f"express direction={action.direction!r}, amount={action.amount!r}"
            )
        pixels = space.render_length(action.amount, "y", screen)
        return pixels if action.direction == "up" else -pixels
    return getattr(action, arg.field)


def _decode(arg: Arg, value: Any, entry: Entry, space: CoordSpace, screen: Screen,
            expected: str) -> dict[str, Any]:
    if arg.type == "point":
        x, y = to_point(value, space, screen, arg.name, expected)
        return {arg.field: x, "y" if arg.field == "x" else "y2": y}
    if arg.type in CHOICES:
        choices = CHOICES[arg.type]
        if isinstance(value, str) and value.strip().lower() in choices:
            return {arg.field: value.strip().lower()}
        listed = ", ".join(repr(c) for c in choices)
        raise fail(f"invalid {entry.kind} action: {entry.name} needs {arg.name} {listed}, got "
                   f"{short(value)}", expected)
    if arg.type in ("keys", "spaced_keys"):
        keys = (value.split() if isinstance(value, str) else None) if arg.type == "spaced_keys" \
            else key_names(value)
        if not keys:
            raise fail(f"{arg.name} must be a list of key names, got {short(value)}", expected)
        return {"keys": keys}
    if arg.type in ("number", "seconds_ms", "signed_pixels"):
        number = _number(value, arg.name, expected)
        if arg.type == "number":
            return {arg.field: number}
        if arg.type == "seconds_ms":
            return {arg.field: round(number * 1000)}
        if number == 0:
            raise fail(f"{arg.name} must not be 0: positive scrolls up, negative down", expected)
        try:
            amount = space.length_to_pixels(abs(number), "y", screen)
        except CoordinateError as exc:
            raise fail(f"{arg.name}: {exc}", expected) from None
        return {"direction": "up" if number > 0 else "down", "amount": amount}
    return {arg.field: value}


def _number(value: Any, what: str, expected: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and abs(value) < 1e9
    ):
        raise fail(f"{what} must be a finite number between -1e9 and 1e9, got {short(value)}",
                   expected)
    return value
