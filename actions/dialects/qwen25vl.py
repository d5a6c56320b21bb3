"""Qwen2.5-VL's agent format: ``<tool_call>{"name": "mobile_use", "arguments": {...}}</tool_call>``.

The system prompt is Qwen-Agent's function-calling template with the ``mobile_use`` or
``computer_use`` tool of the Qwen2.5-VL agent cookbooks, restricted to the actions the env
supports. Coordinates are pixels of the smart-resized screenshot, whose size the tool description
states ("The screen's resolution is 1092x2408." for a 1080x2400 phone at the default budget).

History follows the cookbooks: one user turn with the query, the previous steps as text ("Task
progress ... Step 1: ...") and the current screenshot. A past step that still has its screenshot
(``PastStep.image``) shows it before its line.

Two extensions beyond the cookbook schemas, both documented in docs/actions.md: ``answer`` (as in
Qwen3-VL's tools) and ``start_coordinate`` on ``left_click_drag`` (as in Anthropic's computer-use
tool), since a typed Drag needs its start point.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from actions.dialects.base import Dialect, ImagePart, Message, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    check_expressible,
    extract_balanced,
    fail,
    is_phone,
    key_names,
    load_literal,
    make_action,
    merge_messages,
    short,
    strip_fences,
    to_point,
)
from core.actions import Action
from core.coords import RESIZED_PIXELS, CoordinateError
from core.geometry import Screen

MOBILE, COMPUTER = "mobile_use", "computer_use"
EXPECTED = (
    'one tool call: <tool_call>\n{"name": "mobile_use" or "computer_use", "arguments": '
    '{"action": ..., ...}}\n</tool_call>, with coordinates in pixels of the screenshot'
)

_SYSTEM = """You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tool}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

_COORD = ("(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates "
          "to move the mouse to.")


@dataclass(frozen=True)
class ToolAction:
    action: str
    kinds: tuple[str, ...]  # the Action kinds it renders from / parses to
    help: str
    params: tuple[str, ...]  # required arguments besides "action"
    optional: tuple[str, ...] = ()


MOBILE_ACTIONS = (
    ToolAction("key", ("key",), "Perform a key event on the mobile device.\n    - This supports "
               "adb's `keyevent` syntax.\n    - Examples: \"volume_up\", \"volume_down\", "
               "\"power\", \"camera\", \"clear\".", ("text",)),
    ToolAction("click", ("tap",), "Click the point on the screen with coordinate (x, y).",
               ("coordinate",)),
    ToolAction("long_press", ("long_press",), "Press the point on the screen with coordinate "
               "(x, y) for specified seconds.", ("coordinate",), ("time",)),
    ToolAction("swipe", ("swipe",), "Swipe from the starting point with coordinate (x, y) to the "
               "end point with coordinates2 (x2, y2).", ("coordinate", "coordinate2")),
    ToolAction("type", ("type",), "Input the specified text into the activated input box.",
               ("text",)),
    ToolAction("system_button", ("back", "home", "enter"), "Press the system button.",
               ("button",)),
    ToolAction("open", ("open_app",), "Open an app on the device.", ("text",)),
    ToolAction("wait", ("wait",), "Wait specified seconds for the change to happen.", (),
               ("time",)),
    ToolAction("answer", ("answer",), "Give the answer the task asks for.", ("text",)),
    ToolAction("terminate", ("terminate",), "Terminate the current task and report its "
               "completion status.", ("status",)),
)
COMPUTER_ACTIONS = (
    ToolAction("key", ("key", "hotkey"), "Performs key down presses on the arguments passed in "
               "order, then performs key releases in reverse order.", ("keys",)),
    ToolAction("type", ("type",), "Type a string of text on the keyboard.", ("text",)),
    ToolAction("mouse_move", ("move",), "Move the cursor to a specified (x, y) pixel coordinate "
               "on the screen.", ("coordinate",)),
    ToolAction("left_click", ("click",), "Click the left mouse button at (x, y).",
               ("coordinate",)),
    ToolAction("left_click_drag", ("drag",), "Click and drag the cursor from start_coordinate to "
               "a specified (x, y) pixel coordinate on the screen.",
               ("start_coordinate", "coordinate")),
    ToolAction("right_click", ("right_click",), "Click the right mouse button at (x, y).",
               ("coordinate",)),
    ToolAction("double_click", ("double_click",), "Double-click the left mouse button at (x, y).",
               ("coordinate",)),
    ToolAction("scroll", ("scroll",), "Performs a scroll of the mouse scroll wheel.",
               ("pixels",), ("coordinate",)),
    ToolAction("wait", ("wait",), "Wait specified seconds for the change to happen.", (),
               ("time",)),
    ToolAction("answer", ("answer",), "Give the answer the task asks for.", ("text",)),
    ToolAction("terminate", ("terminate",), "Terminate the current task and report its "
               "completion status.", ("status",)),
)
TOOLS = {MOBILE: MOBILE_ACTIONS, COMPUTER: COMPUTER_ACTIONS}
_BUTTONS = {"back": "back", "home": "home", "enter": "enter"}  # plus Menu -> key "menu"


def _param_schemas(tool: str, actions: list[ToolAction]) -> dict[str, Any]:
    used = {p for a in actions for p in a.params + a.optional}
    needed_by = {
        p: ", ".join(f"`action={a.action}`" for a in actions if p in a.params + a.optional)
        for p in used
    }
    schemas: dict[str, Any] = {
        "coordinate": {"description": f"{_COORD} Required only by {needed_by.get('coordinate')}.",
                       "type": "array"},
        "coordinate2": {"description": f"{_COORD} Required only by "
                        f"{needed_by.get('coordinate2')}.", "type": "array"},
        "start_coordinate": {"description": "(x, y): Where the drag starts. Required only by "
                             f"{needed_by.get('start_coordinate')}.", "type": "array"},
        "text": {"description": f"Required only by {needed_by.get('text')}.", "type": "string"},
        "keys": {"description": f"Required only by {needed_by.get('keys')}.", "type": "array"},
        "pixels": {"description": "The amount of scrolling to perform. Positive values scroll "
                   "up, negative values scroll down. Required only by `action=scroll`.",
                   "type": "number"},
        "time": {"description": f"The seconds to wait. Required only by {needed_by.get('time')}.",
                 "type": "number"},
        "button": {"description": "Back means returning to the previous interface, Home means "
                   "returning to the desktop, Menu means opening the application background "
                   "menu, and Enter means pressing the enter. Required only by "
                   "`action=system_button`", "enum": ["Back", "Home", "Menu", "Enter"],
                   "type": "string"},
        "status": {"description": "The status of the task. Required only by "
                   "`action=terminate`.", "type": "string", "enum": ["success", "failure"]},
    }
    action_help = "The action to perform. The available actions are:\n" + "\n".join(
        f"* `{a.action}`: {a.help}" for a in actions
    )
    properties = {"action": {"description": action_help, "enum": [a.action for a in actions],
                             "type": "string"}}
    properties |= {p: s for p, s in schemas.items() if p in used}
    return {"properties": properties, "required": ["action"], "type": "object"}


class Qwen25VLDialect(Dialect):
    name = "qwen25vl"
    kinds = frozenset(k for actions in TOOLS.values() for a in actions for k in a.kinds)
    stop = ("</tool_call>",)

    def __init__(self, kinds: Iterable[str] | None = None) -> None:
        # Kinds both tools express (type, key, wait, ...) render with the env's own tool.
        self.default_tool = MOBILE if is_phone(kinds) else COMPUTER

    # Prompt ---------------------------------------------------------------------------------
    def tool_for(self, action_kinds: Iterable[str]) -> str:
        return MOBILE if is_phone(action_kinds) else COMPUTER

    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        kinds = set(action_kinds)
        tool = self.tool_for(kinds)
        actions = [a for a in TOOLS[tool] if kinds & set(a.kinds)]
        h, w = screen.resized_size()
        if tool == MOBILE:
            description = (
                "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
                "* This is an interface to a mobile device with touchscreen. You can perform "
                "actions like clicking, typing, swiping, etc.\n"
                "* Some applications may take time to start or process actions, so you may need "
                "to wait and take successive screenshots to see the results of your actions.\n"
                f"* The screen's resolution is {w}x{h}.\n"
                "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
                "center of the element. Don't click boxes on their edges unless asked."
            )
        else:
            description = (
                "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
                "* This is an interface to a desktop GUI. You do not have access to a terminal "
                "or applications menu. You must click on desktop icons to start applications.\n"
                "* Some applications may take time to start or process actions, so you may need "
                "to wait and take successive screenshots to see the results of your actions.\n"
                f"* The screen's resolution is {w}x{h}.\n"
                "* Whenever you intend to move the cursor to click on an element like an icon, "
                "you should consult a screenshot to determine the coordinates of the element "
                "before moving the cursor.\n"
                "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
                "center of the element. Don't click boxes on their edges unless asked."
            )
        function = {
            "type": "function",
            "function": {
                "name_for_human": tool,
                "name": tool,
                "description": description,
                "parameters": _param_schemas(tool, actions),
                "args_format": "Format the arguments as a JSON object.",
            },
        }
        return _SYSTEM.format(tool=json.dumps(function, ensure_ascii=False))

    def render_step(self, step: PastStep, index: int) -> list[Message]:
        """One line of the task progress; the step's screenshot first when it is kept."""
        body = step.response
        if "<tool_call>" in body:
            body = body.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]
        line = f"Step {index + 1}: {body.strip()}; result: {step.feedback or 'done'}\n"
        parts: list = [ImagePart(step.image)] if step.image is not None else []
        return [Message("user", [*parts, TextPart(line)])]

    def build_prompt(
        self,
        goal: str,
        history: list[PastStep],
        current_image: int,
        action_kinds: Iterable[str],
        screen: Screen,
    ) -> Prompt:
        messages = [
            Message("system", [TextPart(self.system_prompt(action_kinds, screen))]),
            Message("user", [TextPart(f"The user query: {goal}\n")]),
        ]
        if history:
            messages.append(Message("user", [TextPart(
                "Task progress (You have done the following operation on the current "
                "device):\n")]))
            for index, step in enumerate(history):
                messages += self.render_step(step, index)
        messages.append(Message("user", [ImagePart(current_image)]))
        return Prompt(merge_messages(messages))

    # Render ---------------------------------------------------------------------------------
    def render_action(self, action: Action, screen: Screen, thought: str = "") -> str:
        tool, args = self._arguments(action, screen)
        call = json.dumps({"name": tool, "arguments": args}, ensure_ascii=False)
        text = f"<tool_call>\n{call}\n</tool_call>"
        return f"{thought.strip()}\n{text}" if thought.strip() else text

    def _arguments(self, action: Action, screen: Screen) -> tuple[str, dict[str, Any]]:
        def point(x: int, y: int) -> list:
            return list(RESIZED_PIXELS.render(x, y, screen))

        kind = action.kind
        tool = self.default_tool
        if kind in ("tap", "long_press", "swipe", "home", "back", "enter", "open_app"):
            tool = MOBILE
        elif kind in ("click", "double_click", "right_click", "move", "drag", "scroll", "hotkey"):
            tool = COMPUTER
        elif kind not in self.kinds:
            raise ValueError(f"the {self.name} format cannot express a {kind} action")
        mobile = tool == MOBILE
        a: dict[str, Any]
        if kind == "tap":
            a = {"action": "click", "coordinate": point(action.x, action.y)}
        elif kind == "long_press":
            a = {"action": "long_press", "coordinate": point(action.x, action.y),
                 "time": action.duration_ms / 1000}
        elif kind == "swipe":
            check_expressible(self.name, action, ("duration_ms",))
            a = {"action": "swipe", "coordinate": point(action.x, action.y),
                 "coordinate2": point(action.x2, action.y2)}
        elif kind in ("home", "back", "enter"):
            a = {"action": "system_button", "button": kind.capitalize()}
        elif kind == "open_app":
            a = {"action": "open", "text": action.app}
        elif kind == "type":
            a = {"action": "type", "text": action.text}
        elif kind == "key":
            a = {"action": "key", "text": action.key} if mobile else {
                "action": "key", "keys": [action.key]}
        elif kind == "hotkey":
            a = {"action": "key", "keys": list(action.keys)}
        elif kind in ("click", "double_click", "right_click", "move"):
            name = {"click": "left_click", "move": "mouse_move"}.get(kind, kind)
            a = {"action": name, "coordinate": point(action.x, action.y)}
        elif kind == "drag":
            a = {"action": "left_click_drag", "start_coordinate": point(action.x, action.y),
                 "coordinate": point(action.x2, action.y2)}
        elif kind == "scroll":
            if action.direction not in ("up", "down") or action.amount is None:
                raise ValueError(
                    f"the {self.name} format scrolls up or down by a number of pixels; it "
                    f"cannot express direction={action.direction!r}, amount={action.amount!r}"
                )
            pixels = RESIZED_PIXELS.render_length(action.amount, "y", screen)
            a = {"action": "scroll", "pixels": pixels if action.direction == "up" else -pixels}
            if action.x is not None:
                a["coordinate"] = point(action.x, action.y)
        elif kind == "wait":
            a = {"action": "wait", "time": action.seconds}
        elif kind == "answer":
            a = {"action": "answer", "text": action.text}
        else:  # terminate
            check_expressible(self.name, action, ("message",))
            a = {"action": "terminate", "status": action.status}
        return tool, a

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        if not text.strip():
            raise fail("the reply is empty", EXPECTED)
        text = strip_fences(text)
        # The first JSON object after <tool_call> (or anywhere, if the tag was left out) is the
        # call; reading it honours quotes, so tags inside its strings do not count. A missing
        # </tool_call> at the end is fine; another <tool_call> after it is a second action.
        opening = text.lower().find("<tool_call>")
        brace = text.find("{", opening + len("<tool_call>") if opening >= 0 else 0)
        if brace < 0:
            raise fail("no tool call was found", EXPECTED)
        literal = extract_balanced(text, brace)
        if "<tool_call>" in text[brace + len(literal):].lower():
            raise fail("the reply holds more than one <tool_call>; write exactly one", EXPECTED)
        try:
            call = load_literal(literal)
        except ValueError as exc:
            raise fail(f"the tool call is not a JSON object: {exc}", EXPECTED) from None
        if not isinstance(call, dict):
            raise fail("the tool call is not a JSON object", EXPECTED)
        tool = call.get("name")
        if not isinstance(tool, str) or tool not in TOOLS:
            raise fail(f"unknown function {short(tool)}; use mobile_use or computer_use", EXPECTED)
        args = call.get("arguments")
        if isinstance(args, str):  # some servers return the arguments JSON-encoded
            try:
                args = load_literal(args)
            except ValueError:
                pass
        if not isinstance(args, dict):
            raise fail("\"arguments\" must be a JSON object", EXPECTED)
        extra = sorted(set(call) - {"name", "arguments"})
        if extra:
            raise fail(f"unexpected field {short(extra[0])} next to name and arguments", EXPECTED)
        return self._build(tool, args, screen)

    def _build(self, tool: str, args: dict[str, Any], screen: Screen) -> Action:
        names = [a.action for a in TOOLS[tool]]
        name = args.get("action")
        spec = next((a for a in TOOLS[tool] if a.action == name), None)
        if spec is None:
            what = f"unknown {tool} action {short(name)}" if name else "\"action\" is missing"
            raise fail(f"{what}; the actions are {', '.join(names)}", EXPECTED)
        expected = f"{EXPECTED}; {tool} action={name} takes " + (
            ", ".join(spec.params + tuple(f"{p} (optional)" for p in spec.optional)) or "nothing"
        )
        given = {k: v for k, v in args.items() if k != "action" and v is not None}
        for p in spec.params:
            if p not in given:
                raise fail(f"action={name} needs the argument {p!r}", expected)
        for p in given:
            if p not in spec.params + spec.optional:
                raise fail(f"action={name} does not take {p!r}", expected)

        def point(key: str) -> tuple[int, int]:
            return to_point(given[key], RESIZED_PIXELS, screen, key, expected)

        def number(key: str) -> float:
            value = given[key]
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and abs(value) < 1e9
            ):
                raise fail(f"{key} must be a number, got {short(value)}", expected)
            return value

        key = f"computer:{name}" if tool == COMPUTER else name
        data = _BUILDERS[key if key in _BUILDERS else name](given, point, number, screen, expected)
        return make_action(data, screen, expected)


Builder = Callable[..., dict[str, Any]]


def _button(given, point, number, screen, expected) -> dict[str, Any]:
    button = str(given["button"]).strip().lower()
    if button == "menu":
        return {"kind": "key", "key": "menu"}
    if button not in _BUTTONS:
        raise fail(f"unknown button {short(given['button'])}; use Back, Home, Menu or Enter",
                   expected)
    return {"kind": _BUTTONS[button]}


def _keys(given, point, number, screen, expected) -> dict[str, Any]:
    keys = key_names(given["keys"])
    if keys is None:
        raise fail(f"keys must be a list of key names, got {short(given['keys'])}", expected)
    return {"kind": "key", "key": keys[0]} if len(keys) == 1 else {"kind": "hotkey", "keys": keys}


def _scroll(given, point, number, screen, expected) -> dict[str, Any]:
    pixels = number("pixels")
    if pixels == 0:
        raise fail("pixels must not be 0: positive scrolls up, negative down", expected)
    try:
        amount = RESIZED_PIXELS.length_to_pixels(abs(pixels), "y", screen)
    except CoordinateError as exc:
        raise fail(f"pixels: {exc}", expected) from None
    data: dict[str, Any] = {"kind": "scroll", "direction": "up" if pixels > 0 else "down",
                            "amount": amount}
    if "coordinate" in given:
        data["x"], data["y"] = point("coordinate")
    return data


def _pointed(kind: str) -> Builder:
    def build(given, point, number, screen, expected) -> dict[str, Any]:
        x, y = point("coordinate")
        return {"kind": kind, "x": x, "y": y}
    return build


def _segment(kind: str, first: str, second: str) -> Builder:
    def build(given, point, number, screen, expected) -> dict[str, Any]:
        (x, y), (x2, y2) = point(first), point(second)
        return {"kind": kind, "x": x, "y": y, "x2": x2, "y2": y2}
    return build


def _text(kind: str, field: str, key: str = "text") -> Builder:
    return lambda given, point, number, screen, expected: {"kind": kind, field: given[key]}


_COMPUTER_BUILDERS: dict[str, Builder] = {
    "computer:key": _keys,
    "computer:mouse_move": _pointed("move"),
    "computer:left_click": _pointed("click"),
    "computer:right_click": _pointed("right_click"),
    "computer:double_click": _pointed("double_click"),
    "computer:left_click_drag": _segment("drag", "start_coordinate", "coordinate"),
    "computer:scroll": _scroll,
}
_BUILDERS: dict[str, Builder] = {
    "key": _text("key", "key"),
    "click": _pointed("tap"),
    "long_press": lambda given, point, number, screen, expected: {
        **_pointed("long_press")(given, point, number, screen, expected),
        **({"duration_ms": round(number("time") * 1000)} if "time" in given else {})},
    "swipe": _segment("swipe", "coordinate", "coordinate2"),
    "type": _text("type", "text"),
    "system_button": _button,
    "open": _text("open_app", "app"),
    "wait": lambda given, point, number, screen, expected: (
        {"kind": "wait", "seconds": number("time")} if "time" in given else {"kind": "wait"}),
    "answer": _text("answer", "text"),
    "terminate": lambda given, point, number, screen, expected: {
        "kind": "terminate", "status": str(given["status"]).strip().lower()},
    **_COMPUTER_BUILDERS,
}
