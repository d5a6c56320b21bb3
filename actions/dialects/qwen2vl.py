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
from typing import Any, Iterable

from actions.dialects.base import Dialect, ImagePart, Message, Part, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    drop_fence_lines,
    extract_balanced,
    fail,
    load_literal,
    make_action,
    merge_messages,
    number_text,
    objects_in,
    short,
    strip_fences,
)
from actions.dialects.table import Arg, Entry, Table, Wording
from core.actions import Action
from core.coords import RELATIVE_1000
from core.geometry import Screen

POINT_HELP = "(x, y) with x and y from 0 to 1000 relative to the screen; (0, 0) is the top-left"
#: How the system prompt names the device of each form factor.
DEVICE = {"phone": "phone", "computer": "computer", "browser": "web browser"}


def _point(name: str = "point", field: str = "x", what: str = "The point", required: bool = True):
    return Arg(name, "point", field, required, f"{what}: {POINT_HELP}.")


def _arg(name: str, type_, description: str, field: str = "", required: bool = True) -> Arg:
    return Arg(name, type_, field or name, required, description)


#: One function per action kind; every form factor uses the same table.
FUNCTIONS: tuple[Entry, ...] = (
    Entry("tap", "Tap", (_point(),), "Tap a point on the screen."),
    Entry("long_press", "LongPress", (_point(),), "Press and hold a point on the screen.",
          fixed=("duration_ms",)),
    Entry("swipe", "Swipe", (_point("start", "x", "Where the finger lands"),
                             _point("end", "x2", "Where the finger lifts")),
          "Swipe from one point to another.", fixed=("duration_ms",)),
    Entry("click", "Click", (_point(),), "Click a point with the left mouse button."),
    Entry("double_click", "DoubleClick", (_point(),), "Double-click a point."),
    Entry("right_click", "RightClick", (_point(),), "Click a point with the right mouse button."),
    Entry("move", "Move", (_point(),), "Move the mouse pointer to a point."),
    Entry("drag", "Drag", (_point("start", "x", "Where the drag starts"),
                           _point("end", "x2", "Where the drag ends")),
          "Drag with the left mouse button from one point to another."),
    Entry("scroll", "Scroll", (_arg("direction", "direction", "One of up, down, left, right."),
                               _point(what="Where to scroll (optional; the screen's centre by "
                                      "default)", required=False)),
          "Scroll the content; 'down' reveals what is below.", fixed=("amount",)),
    Entry("type", "Type", (_arg("text", "text", "The text to type."),),
          "Type text into the focused input field."),
    Entry("key", "Key", (_arg("key", "text", "The key's name."),),
          "Press one key, such as enter, backspace or volume_up."),
    Entry("hotkey", "Hotkey", (_arg("keys", "keys", "The keys, in the order they go down."),),
          "Press keys together, such as [\"ctrl\", \"c\"]."),
    Entry("home", "Home", (), "Go to the home screen."),
    Entry("back", "Back", (), "Go back to the previous screen."),
    Entry("enter", "Enter", (), "Press the enter key."),
    Entry("open_app", "OpenApp", (_arg("app", "text", "The app's name or package."),),
          "Open an app by its name."),
    Entry("navigate", "Navigate", (_arg("url", "text", "The URL to open."),),
          "Open a URL in the browser."),
    Entry("wait", "Wait", (_arg("seconds", "number", "How long to wait, in seconds (default 1).",
                                required=False),), "Wait for the screen to change."),
    Entry("answer", "Answer", (_arg("text", "text", "The answer."),),
          "Give the answer the task asks for, and finish."),
    Entry("terminate", "Terminate", (_arg("status", "status", "success or failure."),
                                     _arg("message", "text", "A short note on the outcome "
                                          "(optional).", required=False)),
          "Finish the task, saying whether it succeeded."),
)
TABLE = Table("qwen2vl", FUNCTIONS)
_BY_NAME = {re.sub(r"[^a-z]", "", name.lower()): name for name in TABLE.names}
WORDING = Wording()

# A keyword starts where a run of stars starts: without the lookbehind, a search would try the
# run from each of its stars, and a reply of 20,000 asterisks took 45 s to refuse.
_KEYWORD = re.compile(r"(?<![*✿])[*✿]+\s*(FUNCTION|ARGS|RESULT|RETURN)\s*[*✿]+\s*:?",
                      re.IGNORECASE)


def _expected(form_factor: str) -> str:
    """What a reply must be, with an example in the env's own words (a browser has no Tap)."""
    name = "Tap" if form_factor == "phone" else "Click"
    return ('one action written as `*FUNCTION*: <name> *ARGS*: <JSON object>`, for example '
            f'`*FUNCTION*: {name} *ARGS*: {{"point": (348,291)}}`')


class Qwen2VLDialect(Dialect):
    name = "qwen2vl"
    kinds = TABLE.kinds
    stop = ("*RESULT*", "✿RESULT✿")
    action_marker = re.compile(r"(?<![*✿])[*✿]+\s*FUNCTION\s*[*✿]+", re.IGNORECASE)
    space = RELATIVE_1000

    def __init__(self, form_factor) -> None:
        super().__init__(form_factor)
        self.expected = _expected(form_factor)

    # Prompt ---------------------------------------------------------------------------------
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        functions = TABLE.listed(set(action_kinds))
        lines = [
            f"You are a helpful assistant operating a {DEVICE[self.form_factor]} to complete "
            "the user's task.",
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
                for p in f.args
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
        parts += [TextPart(step.response.strip(), reply=True),
                  TextPart(f"\n*RESULT*: {feedback}")]
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
        entry, args = TABLE.encode(action, self.space, screen)
        written = []
        for key, value in args.items():
            if isinstance(value, tuple):  # a point
                text = f"({value[0]},{value[1]})"
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                text = number_text(value)
            else:
                text = json.dumps(value, ensure_ascii=False)
            written.append(f"{json.dumps(key)}: {text}")
        call = f"*FUNCTION*: {entry.name} *ARGS*: {{{', '.join(written)}}}"
        return f"{thought.strip()}\n{call}" if thought.strip() else call

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        if not text.strip():
            raise fail("the reply is empty", self.expected)
        text = strip_fences(text)
        marks = list(_KEYWORD.finditer(text))
        kinds = [m[1].upper() for m in marks]
        at = kinds.index("FUNCTION") if "FUNCTION" in kinds else len(kinds)
        if at > (kinds.index("RESULT") if "RESULT" in kinds else len(kinds) - 1):
            raise fail("no *FUNCTION* keyword was found", self.expected)
        fn_mark = marks[at]
        following = marks[at + 1] if at + 1 < len(marks) else None
        args_mark = following if following is not None and kinds[at + 1] == "ARGS" else None
        name_end = following.start() if following is not None else len(text)
        raw_name = text[fn_mark.end() : name_end].strip().splitlines()
        name = raw_name[0].strip(" \t`'\"") if raw_name else ""
        args, end = _read_args(text, args_mark, self.expected) if args_mark else ({}, name_end)
        # Generation stops at *RESULT*: what follows it is not part of this reply. Before it,
        # another FUNCTION, ARGS or arguments object means a second action. (Keywords inside
        # ARGS strings are skipped: the search starts after the object.)
        stop = len(text)
        for mark in _KEYWORD.finditer(text, end):
            if mark[1].upper() in ("RESULT", "RETURN"):
                stop = mark.start()
                break
            raise fail("the reply holds more than one action; write exactly one", self.expected)
        if objects_in(text[end:stop]):
            raise fail("the reply holds more than one action (a second ARGS object follows the "
                       "first); write exactly one", self.expected)
        entry = TABLE.lookup(_BY_NAME.get(re.sub(r"[^a-z]", "", name.lower()), name), args,
                             self.expected, self._unknown)
        expected = f"{self.expected}; {entry.name} takes " + (
            ", ".join(p.name for p in entry.args) or "no arguments"
        )
        data = TABLE.decode(entry, args, self.space, screen, expected, WORDING)
        return make_action(data, screen, expected)


    def _unknown(self, name: str):
        what = f"unknown action {short(name)}" if name else "the action name is missing"
        return fail(f"{what}; the actions are {', '.join(TABLE.names)}", self.expected)


def _read_args(text: str, mark: re.Match, expected: str) -> tuple[dict[str, Any], int]:
    """The ARGS object after ``mark``, and where it ends; nothing at all means no arguments."""
    start = mark.end()
    brace = text.find("{", start)
    # Fence lines between *ARGS* and the object (ARGS in a ```json block) are not part of it.
    if brace < 0 or drop_fence_lines(text[start:brace]).strip():
        following = _KEYWORD.search(text, start)
        chunk = drop_fence_lines(text[start : following.start() if following else len(text)])
        if chunk.strip():
            raise fail(f"*ARGS* must be a JSON object, got {short(chunk.strip())}", expected)
        return {}, start
    try:
        literal = extract_balanced(text, brace)
        args = load_literal(literal)
    except ValueError as exc:
        raise fail(f"*ARGS* could not be read: {exc}", expected) from None
    if not isinstance(args, dict):
        raise fail("*ARGS* must be a JSON object", expected)
    return args, min(brace + len(literal), len(text))


def _image_or_note(image: int | None, index: int) -> Part:
    return ImagePart(image) if image is not None else TextPart(f"(screenshot {index} not shown)")
