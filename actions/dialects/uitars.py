"""UI-TARS: ``Thought: ...`` then ``Action: click(start_box='(x,y)')`` in [0, 1000) units.

Points may be written ``'(x,y)'``, as a box ``'<|box_start|>(x1,y1),(x2,y2)<|box_end|>'`` (its
centre is used) or as ``point='<point>x y</point>'`` (UI-TARS-1.5). The prompts are UI-TARS's
computer and mobile templates; which one, and whether ``click`` means a tap or a mouse click, comes
from the env's form factor (``get_dialect("uitars", "phone")``). The browser gets the computer
template with two extensions, ``navigate(url='')`` and ``press_back()``; the phone gets
``hotkey(key='')`` for one key and ``press_enter()`` (docs/actions.md).

``uitars15`` is the same table with UI-TARS-1.5's coordinates: pixels of the smart-resized
screenshot instead of [0, 1000).

History follows UI-TARS: the instruction prompt as the first user turn, then for each step its
screenshot (user) and the model's reply (assistant), then the current screenshot. Steps whose
screenshot was dropped keep only their reply. Feedback the runtime gives (a parse error, a failed
action) is added as a short user line after the reply, since the model must see its mistakes.
"""

from __future__ import annotations

import re
import string
import sys
from dataclasses import dataclass
from typing import Iterable

from actions.dialects.base import Dialect, ImagePart, Message, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    drop_fence_lines,
    fail,
    make_action,
    merge_messages,
    require_closed,
    short,
    strip_fences,
)
from actions.dialects.table import Arg, Entry, Rule, Table, Wording
from core.actions import Action
from core.coords import RELATIVE_1000, RESIZED_PIXELS, CoordSpace
from core.geometry import Screen

#: finished() carries no failure status; call_user() (the agent asks a person for help) ends the
#: episode as a failure with this message.
CALL_USER_MESSAGE = "the agent asked the user for help (call_user)"
WAIT_SECONDS = 5.0  # UI-TARS's prompt: "wait() #Sleep for 5s"

_PROMPT_HEAD = """You are a GUI agent. You are given a task and your action history, with \
screenshots. You need to perform the next action to complete the task.

## Output Format
```
Thought: ...
Action: ...
```

## Action Space
"""
_PROMPT_TAIL = """

## Note
- Use English in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one \
sentence in `Thought` part.

## User Instruction
{instruction}
"""
_BOX = "'<|box_start|>(x1,y1)<|box_end|>'"
_BOX2 = "'<|box_start|>(x3,y3)<|box_end|>'"
_START = Arg("start_box", "point", "x")
_END = Arg("end_box", "point", "x2")
_KEY = Arg("key", "spaced_keys", "keys")
_CONTENT = Arg("content", "text", "text")


def _blank_content(args) -> bool:
    return not args.get("content")


def _one_key(args) -> bool:
    return len(str(args.get("key", "")).split()) == 1


_TYPE = Entry("type", "type", (_CONTENT,), "type(content='') #If you want to submit your input, "
              "use \"\\n\" at the end of `content`.")
_SCROLL = Entry("scroll", "scroll", (Arg("start_box", "point", "x", required=False),
                                     Arg("direction", "direction", "direction")),
                f"scroll(start_box={_BOX}, direction='down or up or right or left')",
                # UI-TARS's scroll has no distance: render refuses an amount, never drops it.
                fixed=("amount",))
_WAIT = Entry("wait", "wait", (), "wait() #Sleep for 5s and take a screenshot to check for any "
              "changes.", implies={"seconds": WAIT_SECONDS}, note="wait() always waits 5 s")
_END_OF_TASK = (
    Entry("answer", "finished", (_CONTENT,), "finished(content='xxx') # Use escape characters "
          "\\', \\\", and \\n in content part to ensure we can parse the content in normal "
          "python string format.",
          when=Rule(lambda args: not _blank_content(args),
                    "finished(content='') is the end of the task, not an empty answer")),
    Entry("terminate", "finished", (Arg("content", "text", "message", required=False),),
          implies={"status": "success"},
          when=Rule(_blank_content, "finished() ends a task with no message")),
    Entry("terminate", "call_user", (), "call_user() # Submit the task and call the user when "
          "the task is unsolvable, or when you need the user's help.",
          implies={"status": "failure", "message": CALL_USER_MESSAGE},
          note="a failed task ends with call_user() and no message of its own"),
)
_HOTKEY = "hotkey(key='') # Split keys with a space and use lowercase."
# Entries in the order of UI-TARS's templates; entries without a line are shown through the line
# of their word (key through hotkey, terminate through finished).
COMPUTER = (
    Entry("click", "click", (_START,), f"click(start_box={_BOX})"),
    Entry("double_click", "left_double", (_START,), f"left_double(start_box={_BOX})"),
    Entry("right_click", "right_single", (_START,), f"right_single(start_box={_BOX})"),
    Entry("move", "hover", (_START,), f"hover(start_box={_BOX})"),
    Entry("drag", "drag", (_START, _END), f"drag(start_box={_BOX}, end_box={_BOX2})"),
    Entry("key", "hotkey", (_KEY,), when=Rule(_one_key, "one key")),
    Entry("hotkey", "hotkey", (_KEY,), _HOTKEY),
    _TYPE, _SCROLL,
)
BROWSER_EXTENSIONS = (
    Entry("navigate", "navigate", (Arg("url", "text", "url"),),
          "navigate(url='') # Open the URL in the browser."),
    Entry("back", "press_back", (), "press_back() # Go back to the previous page."),
)
MOBILE = (
    Entry("tap", "click", (_START,), f"click(start_box={_BOX})"),
    Entry("long_press", "long_press", (_START,), f"long_press(start_box={_BOX})",
          fixed=("duration_ms",)),
    _TYPE, _SCROLL,
    Entry("open_app", "open_app", (Arg("app_name", "text", "app"),), "open_app(app_name='')"),
    Entry("swipe", "drag", (_START, _END), f"drag(start_box={_BOX}, end_box={_BOX2})",
          fixed=("duration_ms",)),
    Entry("home", "press_home", (), "press_home()"),
    Entry("back", "press_back", (), "press_back()"),
    # Extensions: the mobile template has no key or enter word.
    Entry("key", "hotkey", (_KEY,), "hotkey(key='') # Press one key, such as volume_up.",
          when=Rule(_one_key, "one key")),
    Entry("enter", "press_enter", (), "press_enter()"),
)
TABLES = {
    "phone": MOBILE + (_WAIT, *_END_OF_TASK),
    "computer": COMPUTER + (_WAIT, *_END_OF_TASK),
    "browser": COMPUTER + BROWSER_EXTENSIONS + (_WAIT, *_END_OF_TASK),
}
_ALIASES = {"left_single": "click", "select": "drag", "press": "hotkey"}  # words, as the peer
_ARG_ALIASES = {"point": "start_box", "start_point": "start_box", "end_point": "end_box"}
_FUNCTIONS = {e.name for entries in TABLES.values() for e in entries} | set(_ALIASES)
_CALL_START = re.compile(r"\b(" + "|".join(sorted(_FUNCTIONS, key=len, reverse=True)) + r")\s*\(")
_POINT_TAG = re.compile(r"<point>\s*([-+\d.eE]+)[\s,]+([-+\d.eE]+)\s*</point>")
_BBOX_TAG = re.compile(r"<bbox>\s*([-+\d.eE]+)[\s,]+([-+\d.eE]+)[\s,]+([-+\d.eE]+)[\s,]+"
                       r"([-+\d.eE]+)\s*</bbox>")
_ACTION_LINE = re.compile(r"^[ \t]*Action:", re.MULTILINE)
_ACTION = re.compile("Action:")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
#: Python's numbered escapes and their hex digits: content is read "in normal python string
#: format" (the prompt), as the ui-tars package reads it, so '\u00e9' is é.
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
WORDING = Wording(call="{name}()", missing="{call} needs {arg}",
                  extra="{call} does not take {arg!r}; it takes {takes}")


@dataclass(frozen=True)
class Call:
    name: str
    args: dict[str, str]
    end: int  # index just past the call in the text


class UITarsDialect(Dialect):
    name = "uitars"
    stop = ()
    action_marker = _ACTION_LINE
    #: How points are written: [0, 1000) relative units (UI-TARS v1).
    space: CoordSpace = RELATIVE_1000
    units = "with x and y from 0 to 1000"

    def __init__(self, form_factor) -> None:
        super().__init__(form_factor)
        self.table = Table(self.name, TABLES[form_factor])
        self.kinds = self.table.kinds
        self.expected = (
            "`Thought: <your reasoning>` then one line `Action: <call>`, for example "
            f"`Action: click(start_box='(235,512)')` {self.units}"
        )

    def action_start(self, text: str) -> re.Match[str] | None:
        # The first `Action:` that starts a line, else the first anywhere (``parse``).
        return _ACTION_LINE.search(text) or _ACTION.search(text)

    # Prompt ---------------------------------------------------------------------------------
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        """UI-TARS's instruction template; ``{instruction}`` is left for build_prompt."""
        kinds = set(action_kinds) | {"answer"}  # finished() is how UI-TARS ends any task
        words = {e.name for e in self.table.listed(kinds)}
        lines = dict.fromkeys(e.description for e in self.table.entries
                              if e.name in words and e.description)
        return _PROMPT_HEAD + "\n".join(lines) + _PROMPT_TAIL

    def render_step(self, step: PastStep, index: int) -> list[Message]:
        messages = []
        if step.image is not None:
            messages.append(Message("user", [ImagePart(step.image)]))
        messages.append(Message("assistant", [TextPart(step.response.strip(), reply=True)]))
        if step.feedback:
            messages.append(Message("user", [TextPart(f"Result: {step.feedback}")]))
        return messages

    def build_prompt(
        self,
        goal: str,
        history: list[PastStep],
        current_image: int,
        action_kinds: Iterable[str],
        screen: Screen,
    ) -> Prompt:
        instruction = self.system_prompt(action_kinds, screen).replace("{instruction}", goal)
        messages = [Message("user", [TextPart(instruction)])]
        for index, step in enumerate(history):
            messages += self.render_step(step, index)
        messages.append(Message("user", [ImagePart(current_image)]))
        # Each reply its own turn, as UI-TARS's agent sends them: two past steps without a
        # screenshot or a result between them are two turns, not one run-on text.
        return Prompt(merge_messages(messages, apart=("assistant",)))

    # Render ---------------------------------------------------------------------------------
    def render_action(self, action: Action, screen: Screen, thought: str = "") -> str:
        entry, args = self.table.encode(action, self.space, screen)
        written = ", ".join(
            f"{key}='({value[0]},{value[1]})'" if isinstance(value, tuple) else
            f"{key}={_quote(str(value))}" for key, value in args.items()
        )
        call = f"{entry.name}({written})"
        return f"Thought: {thought.strip()}\nAction: {call}" if thought.strip() else \
            f"Action: {call}"

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        expected = self.expected
        if not text.strip():
            raise fail("the reply is empty", expected)
        text = strip_fences(text)
        # The first `Action:` that starts a line (else the first anywhere, whose call must then
        # end the reply) opens the call. With no `Action:`, the reply must be the call alone: a
        # call named in a thought ("I must not call finished() yet") is never performed.
        marker = self.action_start(text)
        line_marker = marker if marker is not None and marker.re is _ACTION_LINE else None
        region = text[marker.end():] if marker else text
        found = _CALL_START.search(region)
        # Fence lines before the call (an action part in its own ```) are not part of it.
        before = drop_fence_lines(region[: found.start()] if found else region)
        if marker and before.strip():
            raise fail(f"unknown action {short(before.strip().split('(')[0][:40])}; the actions "
                       f"are {', '.join(self.table.names)}", expected)
        if found is None or (not marker and before.strip()):
            raise fail("no `Action:` line with a call", expected)
        call = _read_call(region, found, expected)
        rest = region[call.end:]
        if "Action:" in rest:
            raise fail("the reply has more than one `Action:`; write exactly one", expected)
        if _CALL_START.search(rest):
            raise fail("the reply holds more than one action; write exactly one", expected)
        if not marker and rest.strip():
            raise fail("no `Action:` line with a call (a call without `Action:` must be the "
                       "whole reply)", expected)
        if not line_marker and rest.strip():  # "I must not write Action: finished() yet"
            raise fail("an `Action:` inside a line must end the reply; start a line with "
                       "`Action:`", expected)
        if tail := rest.split("\n", 1)[0].strip():
            # type(content='print('hi')') reads as "print('hi" followed by "')": never type a
            # text cut short at a quote that was not its end.
            raise fail(f"text follows the call on its line ({short(tail[:30])}); a quote inside "
                       "content must be escaped as \\'", expected)
        name = _ALIASES.get(call.name, call.name)
        args = {k: _box_text(v) if k in ("start_box", "end_box") else v
                for k, v in call.args.items()}

        def unknown(word: str):
            return fail(f"unknown action {short(word)}; the actions are "
                        f"{', '.join(self.table.names)}", expected)

        entry = self.table.lookup(name, args, expected, unknown)
        data = self.table.decode(entry, args, self.space, screen, expected, WORDING)
        return make_action(data, screen, expected)


class UITars15Dialect(UITarsDialect):
    """UI-TARS-1.5: the same words, with points in pixels of the smart-resized screenshot."""

    name = "uitars15"
    space = RESIZED_PIXELS
    units = "in pixels of the screenshot"


def _quote(text: str) -> str:
    """A single-quoted argument with UI-TARS's escapes (\\', \\\\, \\n)."""
    escaped = (text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f"'{escaped}'"


def _box_text(value: str) -> str:
    """The numbers of a start_box/end_box/point value, without the grounding tokens."""
    value = _POINT_TAG.sub(r"(\1,\2)", value)
    value = _BBOX_TAG.sub(r"(\1,\2),(\3,\4)", value)
    return value.replace("<|box_start|>", "").replace("<|box_end|>", "")


def _read_call(text: str, start: re.Match, expected: str) -> Call:
    """Read ``name(key='value', ...)`` from ``start``; a missing final ``)`` is forgiven.

    Values are quoted strings (single or double, backslash escapes) or bare text up to the next
    ``,`` or ``)`` outside brackets. A quote counts as closing only when a ``,`` or ``)`` (or the
    end) follows it, so an unescaped apostrophe inside content (``'I'm here'``) stays in the text.
    """
    name = start[1]
    i = start.end()
    n = len(text)
    args: dict[str, str] = {}

    def skip_space(j: int) -> int:
        while j < n and text[j].isspace():
            j += 1
        return j

    while True:
        i = skip_space(i)
        if i >= n or text[i] == ")":
            return Call(name, args, min(i + 1, n))
        key_match = re.compile(r"([A-Za-z_]\w*)\s*=\s*").match(text, i)
        if key_match is None:
            raise fail(f"{name}() arguments must be written key='value', near "
                       f"{short(text[i:i + 30])}", expected)
        key = _ARG_ALIASES.get(key_match[1], key_match[1])
        if key in args:
            raise fail(f"{name}() has {key!r} twice", expected)
        i = key_match.end()
        if i < n and text[i] in "'\"":
            try:
                value, i = _read_quoted(text, i)
            except ValueError as exc:
                raise fail(f"{key}= cannot be read: {exc}", expected) from None
        else:
            value, i = _read_bare(text, i)
        args[key] = value
        i = skip_space(i)
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] != ")":
            raise fail(f"expected , or ) after {key}= in {name}(), near "
                       f"{short(text[i:i + 30])}", expected)


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and j + 1 < n:
            nxt = text[j + 1]
            digits = text[j + 2 : j + 2 + _HEX_ESCAPES.get(nxt, 0)]
            if (nxt in _HEX_ESCAPES and len(digits) == _HEX_ESCAPES[nxt]
                    and all(c in string.hexdigits for c in digits)
                    and int(digits, 16) <= sys.maxunicode):
                out.append(chr(int(digits, 16)))
                j += 2 + len(digits)
                continue
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            j += 2
            continue
        if ch == quote:
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k >= n or text[k] in ",)\n":
                return _joined(out), j + 1
        out.append(ch)
        j += 1
    require_closed(text[i + 1:])
    return _joined(out), n  # unterminated at the end of the reply: take what is there


def _joined(chars: list[str]) -> str:
    """The characters read, a JSON-style surrogate pair ('\\ud83d\\ude00') made one character;
    a lone surrogate stays, and the action's validation refuses it."""
    return "".join(chars).encode("utf-16-le", "surrogatepass").decode("utf-16-le",
                                                                     "surrogatepass")


def _read_bare(text: str, i: int) -> tuple[str, int]:
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        j += 1
    return text[i:j].strip(), j
