"""UI-TARS: ``Thought: ...`` then ``Action: click(start_box='(x,y)')`` in [0, 1000] units.

Points may be written ``'(x,y)'``, as a box ``'<|box_start|>(x1,y1),(x2,y2)<|box_end|>'`` (its
centre is used) or as ``point='<point>x y</point>'`` (UI-TARS-1.5). The prompts are UI-TARS's
computer and mobile templates; which one, and whether ``click`` means a tap or a mouse click, comes
from the env's action kinds (``get_dialect("uitars", kinds)``; without kinds it is a computer).

History follows UI-TARS: the instruction prompt as the first user turn, then for each step its
screenshot (user) and the model's reply (assistant), then the current screenshot. Steps whose
screenshot was dropped keep only their reply. Feedback the runtime gives (a parse error, a failed
action) is added as a short user line after the reply, since the model must see its mistakes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from actions.dialects.base import Dialect, ImagePart, Message, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    check_expressible,
    fail,
    is_phone,
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

EXPECTED = (
    "`Thought: <your reasoning>` then one line `Action: <call>`, for example "
    "`Action: click(start_box='(235,512)')` with x and y from 0 to 1000"
)
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
_FINISHED = ("finished(content='xxx') # Use escape characters \\', \\\", and \\n in content part "
             "to ensure we can parse the content in normal python string format.")
# (kind, line) in the order of UI-TARS's templates.
COMPUTER_SPACE = (
    ("click", f"click(start_box={_BOX})"),
    ("double_click", f"left_double(start_box={_BOX})"),
    ("right_click", f"right_single(start_box={_BOX})"),
    ("move", f"hover(start_box={_BOX})"),
    ("drag", f"drag(start_box={_BOX}, end_box={_BOX2})"),
    ("hotkey", "hotkey(key='') # Split keys with a space and use lowercase."),
    ("type", "type(content='') #If you want to submit your input, use \"\\n\" at the end of "
             "`content`."),
    ("scroll", f"scroll(start_box={_BOX}, direction='down or up or right or left')"),
    ("wait", "wait() #Sleep for 5s and take a screenshot to check for any changes."),
    ("answer", _FINISHED),
)
MOBILE_SPACE = (
    ("tap", f"click(start_box={_BOX})"),
    ("long_press", f"long_press(start_box={_BOX})"),
    ("type", "type(content='') #If you want to submit your input, use \"\\n\" at the end of "
             "`content`."),
    ("scroll", f"scroll(start_box={_BOX}, direction='down or up or right or left')"),
    ("open_app", "open_app(app_name='')"),
    ("swipe", f"drag(start_box={_BOX}, end_box={_BOX2})"),
    ("home", "press_home()"),
    ("back", "press_back()"),
    ("wait", "wait() #Sleep for 5s and take a screenshot to check for any changes."),
    ("answer", _FINISHED),
)
_ALSO_LISTED = {"key": "hotkey", "terminate": "answer"}  # kinds shown through another's line

_FUNCTIONS = {
    "click", "left_single", "left_double", "right_single", "hover", "long_press", "drag",
    "select", "hotkey", "press", "type", "scroll", "open_app", "press_home", "press_back", "wait",
    "finished", "call_user",
}
_CALL_START = re.compile(r"\b(" + "|".join(sorted(_FUNCTIONS, key=len, reverse=True)) + r")\s*\(")
_POINT_TAG = re.compile(r"<point>\s*([-+\d.eE]+)[\s,]+([-+\d.eE]+)\s*</point>")
_BBOX_TAG = re.compile(r"<bbox>\s*([-+\d.eE]+)[\s,]+([-+\d.eE]+)[\s,]+([-+\d.eE]+)[\s,]+"
                       r"([-+\d.eE]+)\s*</bbox>")
_ACTION_LINE = re.compile(r"^[ \t]*Action:", re.MULTILINE)
_ACTION = re.compile("Action:")
_ALIASES = {"point": "start_box", "start_point": "start_box", "end_point": "end_box"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class Call:
    name: str
    args: dict[str, str]
    end: int  # index just past the call in the text


class UITarsDialect(Dialect):
    name = "uitars"
    stop = ()

    def __init__(self, kinds: Iterable[str] | None = None) -> None:
        self.mobile = is_phone(kinds)
        space = MOBILE_SPACE if self.mobile else COMPUTER_SPACE
        listed = {k for k, _ in space}
        self.kinds = frozenset(listed | {k for k, via in _ALSO_LISTED.items() if via in listed})

    # Prompt ---------------------------------------------------------------------------------
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        """UI-TARS's instruction template; ``{instruction}`` is left for build_prompt."""
        kinds = set(action_kinds) | {"answer"}  # finished() is how UI-TARS ends any task
        kinds |= {via for k, via in _ALSO_LISTED.items() if k in kinds}
        space = MOBILE_SPACE if is_phone(kinds) else COMPUTER_SPACE
        lines = [line for kind, line in space if kind in kinds]
        return _PROMPT_HEAD + "\n".join(lines) + _PROMPT_TAIL

    def render_step(self, step: PastStep, index: int) -> list[Message]:
        messages = []
        if step.image is not None:
            messages.append(Message("user", [ImagePart(step.image)]))
        messages.append(Message("assistant", [TextPart(step.response.strip())]))
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
        return Prompt(merge_messages(messages))

    # Render ---------------------------------------------------------------------------------
    def render_action(self, action: Action, screen: Screen, thought: str = "") -> str:
        def box(x: int, y: int) -> str:
            vx, vy = RELATIVE_1000.render(x, y, screen)
            return f"'({number_text(vx)},{number_text(vy)})'"

        kind = action.kind
        if kind not in self.kinds:
            raise ValueError(
                f"the {self.name} format for a {'phone' if self.mobile else 'computer'} cannot "
                f"express a {kind} action; it has {', '.join(sorted(self.kinds))}"
            )
        if kind in ("tap", "click", "double_click", "right_click", "move", "long_press"):
            if kind == "long_press":
                check_expressible(self.name, action, ("duration_ms",))
            name = {"tap": "click", "double_click": "left_double", "right_click": "right_single",
                    "move": "hover"}.get(kind, kind)
            call = f"{name}(start_box={box(action.x, action.y)})"
        elif kind in ("drag", "swipe"):
            if kind == "swipe":
                check_expressible(self.name, action, ("duration_ms",))
            call = f"drag(start_box={box(action.x, action.y)}, end_box={box(action.x2, action.y2)})"
        elif kind in ("key", "hotkey"):
            keys = [action.key] if kind == "key" else list(action.keys)
            if any(not k or re.search(r"\s", k) for k in keys):
                raise ValueError(f"the {self.name} hotkey splits keys on spaces: {keys!r}")
            call = f"hotkey(key={_quote(' '.join(keys))})"
        elif kind == "type":
            call = f"type(content={_quote(action.text)})"
        elif kind == "scroll":
            check_expressible(self.name, action, ("amount",))
            where = f"start_box={box(action.x, action.y)}, " if action.x is not None else ""
            call = f"scroll({where}direction='{action.direction}')"
        elif kind == "open_app":
            call = f"open_app(app_name={_quote(action.app)})"
        elif kind in ("home", "back"):
            call = f"press_{kind}()"
        elif kind == "wait":
            if action.seconds != WAIT_SECONDS:
                raise ValueError(f"the {self.name} wait() always waits {WAIT_SECONDS:g} s")
            call = "wait()"
        elif kind == "answer":
            if not action.text:
                raise ValueError(f"the {self.name} format reads finished(content='') as the end "
                                 "of the task, not an empty answer")
            call = f"finished(content={_quote(action.text)})"
        else:  # terminate
            if action.status == "failure":
                if action.message not in ("", CALL_USER_MESSAGE):
                    raise ValueError(f"the {self.name} format ends a failed task with call_user() "
                                     "and no message")
                call = "call_user()"
            else:
                check_expressible(self.name, action, ("message",))
                call = "finished()"
        return f"Thought: {thought.strip()}\nAction: {call}" if thought.strip() else \
            f"Action: {call}"

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        if not text.strip():
            raise fail("the reply is empty", EXPECTED)
        text = strip_fences(text)
        # The first `Action:` that starts a line (else the first anywhere) opens the call.
        marker = _ACTION_LINE.search(text) or _ACTION.search(text)
        region = text[marker.end():] if marker else text
        found = _CALL_START.search(region)
        before = region[: found.start()] if found else region
        if marker and before.strip():
            known = ", ".join(sorted(_FUNCTIONS))
            raise fail(f"unknown action {short(before.strip().split('(')[0][:40])}; the actions "
                       f"are {known}", EXPECTED)
        if found is None:
            raise fail("no `Action:` line with a call", EXPECTED)
        call = _read_call(region, found)
        rest = region[call.end:]
        if "Action:" in rest:
            raise fail("the reply has more than one `Action:`; write exactly one", EXPECTED)
        if _CALL_START.search(rest):
            raise fail("the reply holds more than one action; write exactly one", EXPECTED)
        return self._build(call, screen)

    def _build(self, call: Call, screen: Screen) -> Action:
        name, args = call.name, call.args
        expected = EXPECTED

        def point(key: str) -> tuple[int, int]:
            if key not in args:
                raise fail(f"{name}() needs {key}", expected)
            return to_point(_box_text(args[key]), RELATIVE_1000, screen, key, expected)

        def allow(*keys: str) -> None:
            extra = sorted(set(args) - set(keys))
            if extra:
                raise fail(f"{name}() does not take {extra[0]!r}; it takes "
                           f"{', '.join(keys) or 'nothing'}", expected)

        data: dict[str, Any]
        if name in ("click", "left_single", "left_double", "right_single", "hover",
                    "long_press"):
            allow("start_box")
            kind = {"click": "tap" if self.mobile else "click",
                    "left_single": "tap" if self.mobile else "click",
                    "left_double": "double_click", "right_single": "right_click",
                    "hover": "move", "long_press": "long_press"}[name]
            x, y = point("start_box")
            data = {"kind": kind, "x": x, "y": y}
        elif name in ("drag", "select"):
            allow("start_box", "end_box")
            (x, y), (x2, y2) = point("start_box"), point("end_box")
            data = {"kind": "swipe" if self.mobile else "drag", "x": x, "y": y, "x2": x2, "y2": y2}
        elif name in ("hotkey", "press"):
            allow("key")
            keys = args.get("key", "").split()
            if not keys:
                raise fail(f"{name}() needs key, such as key='ctrl c'", expected)
            data = {"kind": "key", "key": keys[0]} if len(keys) == 1 else \
                {"kind": "hotkey", "keys": keys}
        elif name == "type":
            allow("content")
            if "content" not in args:
                raise fail("type() needs content", expected)
            data = {"kind": "type", "text": args["content"]}
        elif name == "scroll":
            allow("start_box", "direction")
            direction = args.get("direction", "").strip().lower()
            if direction not in ("up", "down", "left", "right"):
                raise fail(f"scroll() needs direction 'up', 'down', 'left' or 'right', got "
                           f"{short(args.get('direction'))}", expected)
            data = {"kind": "scroll", "direction": direction}
            if "start_box" in args:
                data["x"], data["y"] = point("start_box")
        elif name == "open_app":
            allow("app_name")
            data = {"kind": "open_app", "app": args.get("app_name", "")}
        elif name in ("press_home", "press_back"):
            allow()
            data = {"kind": name.removeprefix("press_")}
        elif name == "wait":
            allow()
            data = {"kind": "wait", "seconds": WAIT_SECONDS}
        elif name == "finished":
            allow("content")
            content = args.get("content", "")
            data = {"kind": "answer", "text": content} if content else \
                {"kind": "terminate", "status": "success"}
        else:  # call_user
            allow()
            data = {"kind": "terminate", "status": "failure", "message": CALL_USER_MESSAGE}
        return make_action(data, screen, expected)


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


def _read_call(text: str, start: re.Match) -> Call:
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
                       f"{short(text[i:i + 30])}", EXPECTED)
        key = _ALIASES.get(key_match[1], key_match[1])
        if key in args:
            raise fail(f"{name}() has {key!r} twice", EXPECTED)
        i = key_match.end()
        if i < n and text[i] in "'\"":
            value, i = _read_quoted(text, i)
        else:
            value, i = _read_bare(text, i)
        args[key] = value
        i = skip_space(i)
        if i < n and text[i] == ",":
            i += 1
        elif i < n and text[i] != ")":
            raise fail(f"expected , or ) after {key}= in {name}(), near "
                       f"{short(text[i:i + 30])}", EXPECTED)


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out: list[str] = []
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and j + 1 < n:
            nxt = text[j + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            j += 2
            continue
        if ch == quote:
            k = j + 1
            while k < n and text[k] in " \t":
                k += 1
            if k >= n or text[k] in ",)\n":
                return "".join(out), j + 1
        out.append(ch)
        j += 1
    return "".join(out), n  # unterminated at the end of the reply: take what is there


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
