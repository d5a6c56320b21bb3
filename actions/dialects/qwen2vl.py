"""The Qwen2-VL paper's visual-agent format: ``*FUNCTION*: Tap *ARGS*: {"point": (348,291)}``.

The system prompt lists each action under a ``### Name`` heading with a one-line description and
its ``Parameters: [...]``, then defines the four keywords. Points are (x, y) in [0, 1000] relative
units (see core.coords). Generation stops at ``*RESULT*``; the runtime then appends
``*RESULT*: <feedback> <screenshot> *RETURN*:`` and the same assistant turn continues, so every
step only extends the previous sequence. Qwen-Agent's ``✿FUNCTION✿`` spelling is accepted too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from actions.dialects.base import Dialect, ImagePart, Message, Part, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    check_expressible,
    extract_balanced,
    fail,
    is_phone,
    key_names,
    load_literal,
    make_action,
    merge_messages,
    number_text,
    short,
    strip_fences,
    to_point,
)
from core.actions import Action
from core.coords import RELATIVE_1000
from core.geometry import Screen
from core.kinds import ALL_KINDS

ParamType = Literal["point", "text", "number", "keys", "direction", "status"]

POINT_HELP = "(x, y) with x and y from 0 to 1000 relative to the screen; (0, 0) is the top-left"


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    description: str
    field: str  # the Action field, or for points the x field ("x" or "x2")
    required: bool = True


@dataclass(frozen=True)
class Function:
    name: str
    kind: str
    description: str
    params: tuple[Param, ...] = ()
    fixed: tuple[str, ...] = ()  # Action fields this format cannot carry (they keep defaults)


def _point(name: str = "point", field: str = "x", what: str = "The point", required: bool = True):
    return Param(name, "point", f"{what}: {POINT_HELP}.", field, required)


FUNCTIONS: tuple[Function, ...] = (
    Function("Tap", "tap", "Tap a point on the screen.", (_point(),)),
    Function("LongPress", "long_press", "Press and hold a point on the screen.", (_point(),),
             fixed=("duration_ms",)),
    Function("Swipe", "swipe", "Swipe from one point to another.",
             (_point("start", "x", "Where the finger lands"),
              _point("end", "x2", "Where the finger lifts")), fixed=("duration_ms",)),
    Function("Click", "click", "Click a point with the left mouse button.", (_point(),)),
    Function("DoubleClick", "double_click", "Double-click a point.", (_point(),)),
    Function("RightClick", "right_click", "Click a point with the right mouse button.",
             (_point(),)),
    Function("Move", "move", "Move the mouse pointer to a point.", (_point(),)),
    Function("Drag", "drag", "Drag with the left mouse button from one point to another.",
             (_point("start", "x", "Where the drag starts"),
              _point("end", "x2", "Where the drag ends"))),
    Function("Scroll", "scroll", "Scroll the content; 'down' reveals what is below.",
             (Param("direction", "direction", "One of up, down, left, right.", "direction"),
              _point(what="Where to scroll (optional; the screen's centre by default)",
                     required=False)), fixed=("amount",)),
    Function("Type", "type", "Type text into the focused input field.",
             (Param("text", "text", "The text to type.", "text"),)),
    Function("Key", "key", "Press one key, such as enter, backspace or volume_up.",
             (Param("key", "text", "The key's name.", "key"),)),
    Function("Hotkey", "hotkey", "Press keys together, such as [\"ctrl\", \"c\"].",
             (Param("keys", "keys", "The keys, in the order they go down.", "keys"),)),
    Function("Home", "home", "Go to the home screen."),
    Function("Back", "back", "Go back to the previous screen."),
    Function("Enter", "enter", "Press the enter key."),
    Function("OpenApp", "open_app", "Open an app by its name.",
             (Param("app", "text", "The app's name or package.", "app"),)),
    Function("Navigate", "navigate", "Open a URL in the browser.",
             (Param("url", "text", "The URL to open.", "url"),)),
    Function("Wait", "wait", "Wait for the screen to change.",
             (Param("seconds", "number", "How long to wait, in seconds (default 1).", "seconds",
                    required=False),)),
    Function("Answer", "answer", "Give the answer the task asks for, and finish.",
             (Param("text", "text", "The answer.", "text"),)),
    Function("Terminate", "terminate", "Finish the task, saying whether it succeeded.",
             (Param("status", "status", "success or failure.", "status"),
              Param("message", "text", "A short note on the outcome (optional).", "message",
                    required=False))),
)
_BY_KIND = {f.kind: f for f in FUNCTIONS}
_BY_NAME = {re.sub(r"[^a-z]", "", f.name.lower()): f for f in FUNCTIONS}

_KEYWORD = re.compile(r"[*✿]+\s*(FUNCTION|ARGS|RESULT|RETURN)\s*[*✿]+\s*:?", re.IGNORECASE)
EXPECTED = (
    'one action written as `*FUNCTION*: <name> *ARGS*: <JSON object>`, for example '
    '`*FUNCTION*: Tap *ARGS*: {"point": (348,291)}`'
)


class Qwen2VLDialect(Dialect):
    name = "qwen2vl"
    kinds = ALL_KINDS
    stop = ("*RESULT*", "✿RESULT✿")

    def __init__(self, kinds: Iterable[str] | None = None) -> None:
        pass  # every kind has a function here; ``kinds`` is accepted for a uniform registry

    # Prompt ---------------------------------------------------------------------------------
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        kinds = set(action_kinds)
        functions = [f for f in FUNCTIONS if f.kind in kinds]
        device = "phone" if is_phone(kinds) else "computer"
        lines = [
            f"You are a helpful assistant operating a {device} to complete the user's task.",
            "",
            "# Actions",
            "",
            "## You have access to the following actions:",
        ]
        for f in functions:
            params = ", ".join(
                "{"
                f'"name": {json.dumps(p.name)}, "description": {json.dumps(p.description)}, '
                f'"required": {p.required}'
                "}"
                for p in f.params
            )
            lines += ["", f"### {f.name}", "", f"{f.name}: {f.description} Parameters: [{params}]"]
        names = ",".join(f.name for f in functions)
        lines += [
            "",
            "## Continuously take action until the task is completed.",
            f"*FUNCTION*: The action to take, should be one of {{{names}}}.",
            "*ARGS*: The input of the action.",
            "*RESULT*: Action results.",
            "*RETURN*: Reply based on action results.",
        ]
        return "\n".join(lines)

    def render_step(self, step: PastStep, index: int) -> list[Message]:
        """Step ``index`` inside the one assistant turn: its screenshot, reply and result.

        The first step's screenshot sits in the user turn, so it starts straight with the reply.
        """
        parts: list[Part] = []
        if index > 0:
            parts += [_image_or_note(step.image, index), TextPart("\n*RETURN*: ")]
        feedback = f"{step.feedback}\n" if step.feedback else ""
        parts.append(TextPart(f"{step.response.strip()}\n*RESULT*: {feedback}"))
        return [Message("assistant", parts)]

    def build_prompt(
        self,
        goal: str,
        history: list[PastStep],
        current_image: int,
        action_kinds: Iterable[str],
        screen: Screen,
    ) -> Prompt:
        first_image = history[0].image if history else current_image
        messages = [
            Message("system", [TextPart(self.system_prompt(action_kinds, screen))]),
            Message("user", [TextPart(goal), _image_or_note(first_image, 0)]),
        ]
        for index, step in enumerate(history):
            messages += self.render_step(step, index)
        if history:
            messages.append(
                Message("assistant", [ImagePart(current_image), TextPart("\n*RETURN*: ")])
            )
        return Prompt(merge_messages(messages), continue_final_message=bool(history))

    # Render ---------------------------------------------------------------------------------
    def render_action(self, action: Action, screen: Screen, thought: str = "") -> str:
        f = _BY_KIND[action.kind]
        check_expressible(self.name, action, f.fixed)
        args: list[str] = []
        for p in f.params:
            value = getattr(action, p.field)
            if value is None or (not p.required and p.type == "text" and value == ""):
                continue
            if p.type == "point":
                y = getattr(action, "y" if p.field == "x" else "y2")
                x_txt, y_txt = (number_text(v) for v in RELATIVE_1000.render(value, y, screen))
                text = f"({x_txt},{y_txt})"
            elif p.type == "number":
                text = number_text(value)
            else:
                text = json.dumps(value, ensure_ascii=False)
            args.append(f"{json.dumps(p.name)}: {text}")
        call = f"*FUNCTION*: {f.name} *ARGS*: {{{', '.join(args)}}}"
        return f"{thought.strip()}\n{call}" if thought.strip() else call

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        if not text.strip():
            raise fail("the reply is empty", EXPECTED)
        text = strip_fences(text)
        marks = list(_KEYWORD.finditer(text))
        kinds = [m[1].upper() for m in marks]
        at = kinds.index("FUNCTION") if "FUNCTION" in kinds else len(kinds)
        if at > (kinds.index("RESULT") if "RESULT" in kinds else len(kinds) - 1):
            raise fail("no *FUNCTION* keyword was found", EXPECTED)
        fn_mark = marks[at]
        following = marks[at + 1] if at + 1 < len(marks) else None
        args_mark = following if following is not None and kinds[at + 1] == "ARGS" else None
        name_end = following.start() if following is not None else len(text)
        raw_name = text[fn_mark.end() : name_end].strip().splitlines()
        name = raw_name[0].strip(" \t`'\"") if raw_name else ""
        spec = _BY_NAME.get(re.sub(r"[^a-z]", "", name.lower()))
        if spec is None:
            known = ", ".join(f.name for f in FUNCTIONS)
            what = f"unknown action {short(name)}" if name else "the action name is missing"
            raise fail(f"{what}; the actions are {known}", EXPECTED)
        args, end = _read_args(text, args_mark) if args_mark else ({}, name_end)
        # Generation stops at *RESULT*: what follows it is not part of this reply. Before it,
        # another FUNCTION or ARGS means a second action. (Keywords inside ARGS strings are
        # skipped: the search starts after the object.)
        for mark in _KEYWORD.finditer(text, end):
            if mark[1].upper() in ("RESULT", "RETURN"):
                break
            raise fail("the reply holds more than one action; write exactly one", EXPECTED)
        return self._build(spec, args, screen)

    def _build(self, spec: Function, args: dict[str, Any], screen: Screen) -> Action:
        expected = f"{EXPECTED}; {spec.name} takes " + (
            ", ".join(p.name for p in spec.params) or "no arguments"
        )
        known = {p.name for p in spec.params}
        extra = sorted(set(args) - known)
        if extra:
            raise fail(f"{spec.name} has no argument {short(extra[0])}", expected)
        data: dict[str, Any] = {"kind": spec.kind}
        for p in spec.params:
            if p.name not in args or args[p.name] is None:
                if p.required:
                    raise fail(f"{spec.name} needs the argument {p.name!r}", expected)
                continue
            value = args[p.name]
            if p.type == "point":
                x, y = to_point(value, RELATIVE_1000, screen, p.name, expected)
                data[p.field] = x
                data["y" if p.field == "x" else "y2"] = y
            elif p.type in ("direction", "status") and isinstance(value, str):
                data[p.field] = value.strip().lower()
            elif p.type == "keys":
                keys = key_names(value)
                if keys is None:
                    raise fail(f"keys must be a list of key names, got {short(value)}", expected)
                data[p.field] = keys
            else:
                data[p.field] = value
        return make_action(data, screen, expected)


def _read_args(text: str, mark: re.Match) -> tuple[dict[str, Any], int]:
    """The ARGS object after ``mark``, and where it ends; nothing at all means no arguments."""
    start = mark.end()
    rest = text[start:]
    body = rest.lstrip()
    if not body.startswith("{"):
        following = _KEYWORD.search(text, start)
        chunk = text[start : following.start() if following else len(text)]
        if chunk.strip():
            raise fail(f"*ARGS* must be a JSON object, got {short(chunk.strip())}", EXPECTED)
        return {}, start
    brace = start + len(rest) - len(body)
    literal = extract_balanced(text, brace)
    try:
        args = load_literal(literal)
    except ValueError as exc:
        raise fail(f"*ARGS* could not be read: {exc}", EXPECTED) from None
    if not isinstance(args, dict):
        raise fail("*ARGS* must be a JSON object", EXPECTED)
    return args, min(brace + len(literal), len(text))


def _image_or_note(image: int | None, index: int) -> Part:
    return ImagePart(image) if image is not None else TextPart(f"(screenshot {index} not shown)")
