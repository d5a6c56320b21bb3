"""Qwen2.5-VL's agent format: ``<tool_call>{"name": "mobile_use", "arguments": {...}}</tool_call>``.

The system prompt is Qwen-Agent's function-calling template with the ``mobile_use`` tool (phone)
or the ``computer_use`` tool (computer and browser) of the Qwen2.5-VL agent cookbooks, restricted
to the actions the env supports. Coordinates are pixels of the smart-resized screenshot, whose size the tool description
states ("The screen's resolution is 1092x2408." for a 1080x2400 phone at the default budget).

History follows the cookbooks: one user turn with the query, the previous steps as text ("Task
progress ... Step 1: ...") and the current screenshot. A past step that still has its screenshot
(``PastStep.image``) shows it before its line.

Extensions beyond the cookbook schemas, documented in docs/actions.md: ``answer`` (as in Qwen3-VL's
tools), ``start_coordinate`` on ``left_click_drag`` (as in Anthropic's computer-use tool), since a
typed Drag needs its start point, a direction ``scroll`` on the phone, and ``navigate`` and
``back`` on the browser.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from actions.dialects.base import Dialect, ImagePart, Message, PastStep, Prompt, TextPart
from actions.dialects.reply_syntax import (
    extract_balanced,
    fail,
    load_literal,
    make_action,
    merge_messages,
    objects_in,
    short,
    strip_fences,
)
from actions.dialects.table import Arg, Entry, Rule, Table, Wording
from core.actions import Action
from core.coords import RESIZED_PIXELS
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
_AT = Arg("coordinate", "point", "x")
_TIME = Arg("time", "number", "seconds", required=False)
_WAIT = Entry("wait", "wait", (_TIME,), "Wait specified seconds for the change to happen.")
_ANSWER = Entry("answer", "answer", (Arg("text", "text", "text"),),
                "Give the answer the task asks for.")
_TERMINATE = Entry("terminate", "terminate", (Arg("status", "status", "status"),),
                   "Terminate the current task and report its completion status.",
                   fixed=("message",))
_BUTTON = "Press the system button."
_OPEN_TAG = re.compile(r"<tool_call>", re.IGNORECASE | re.ASCII)
#: The start of a call object (or of its arguments), and the keys one has anywhere: a second one
#: after the call is a second action, whether or not it has a tag of its own.
_CALL_OBJECT = re.compile(r"""\{\s*["']?(?:name|arguments|action)["']?\s*:""")
_CALL_KEYS = {"name", "arguments", "action"}


def _one_key(args) -> bool:
    keys = args.get("keys")
    return isinstance(keys, list) and len(keys) == 1


MOBILE_ACTIONS = (
    Entry("key", "key", (Arg("text", "text", "key"),), "Perform a key event on the mobile "
          "device.\n    - This supports adb's `keyevent` syntax.\n    - Examples: \"volume_up\", "
          "\"volume_down\", \"power\", \"camera\", \"clear\"."),
    Entry("tap", "click", (_AT,), "Click the point on the screen with coordinate (x, y)."),
    Entry("long_press", "long_press", (_AT, Arg("time", "seconds_ms", "duration_ms",
                                                 required=False)),
          "Press the point on the screen with coordinate (x, y) for specified seconds."),
    Entry("swipe", "swipe", (_AT, Arg("coordinate2", "point", "x2")), "Swipe from the starting "
          "point with coordinate (x, y) to the end point with coordinates2 (x2, y2).",
          fixed=("duration_ms",)),
    Entry("type", "type", (Arg("text", "text", "text"),),
          "Input the specified text into the activated input box."),
    Entry("back", "system_button", (), _BUTTON, consts={"button": "Back"}),
    Entry("home", "system_button", (), _BUTTON, consts={"button": "Home"}),
    Entry("enter", "system_button", (), _BUTTON, consts={"button": "Enter"}),
    Entry("key", "system_button", (), _BUTTON, consts={"button": "Menu"},
          implies={"key": "menu"}),
    Entry("open_app", "open", (Arg("text", "text", "app"),), "Open an app on the device."),
    # Extension: mobile_use has no scroll; the phone env scrolls by direction, as UI-TARS does.
    Entry("scroll", "scroll", (Arg("direction", "direction", "direction"),
                               Arg("coordinate", "point", "x", required=False)),
          "Scroll the content under (x, y), or the screen's centre; `direction` down reveals "
          "what is below.", fixed=("amount",)),
    _WAIT, _ANSWER, _TERMINATE,
)
COMPUTER_ACTIONS = (
    Entry("key", "key", (Arg("keys", "keys", "keys"),), "Performs key down presses on the "
          "arguments passed in order, then performs key releases in reverse order.",
          when=Rule(_one_key, "one key")),
    Entry("hotkey", "key", (Arg("keys", "keys", "keys"),), "Performs key down presses on the "
          "arguments passed in order, then performs key releases in reverse order."),
    Entry("type", "type", (Arg("text", "text", "text"),), "Type a string of text on the "
          "keyboard."),
    Entry("move", "mouse_move", (_AT,), "Move the cursor to a specified (x, y) pixel coordinate "
          "on the screen."),
    Entry("click", "left_click", (_AT,), "Click the left mouse button at (x, y)."),
    Entry("drag", "left_click_drag", (Arg("start_coordinate", "point", "x"),
                                      Arg("coordinate", "point", "x2")),
          "Click and drag the cursor from start_coordinate to a specified (x, y) pixel "
          "coordinate on the screen."),
    Entry("right_click", "right_click", (_AT,), "Click the right mouse button at (x, y)."),
    Entry("double_click", "double_click", (_AT,), "Double-click the left mouse button at "
          "(x, y)."),
    Entry("scroll", "scroll", (Arg("pixels", "signed_pixels", "amount"),
                               Arg("coordinate", "point", "x", required=False)),
          "Performs a scroll of the mouse scroll wheel."),
    _WAIT, _ANSWER, _TERMINATE,
)
#: Extensions for the browser (docs/actions.md): the cookbook's computer_use has no URL bar or
#: back button, and the browser env offers both.
BROWSER_ACTIONS = COMPUTER_ACTIONS[:-3] + (
    Entry("navigate", "navigate", (Arg("url", "text", "url"),), "Open a URL in the browser."),
    Entry("back", "back", (), "Go back to the previous page."),
) + COMPUTER_ACTIONS[-3:]
TABLES = {
    "phone": Table("qwen25vl", MOBILE_ACTIONS),
    "computer": Table("qwen25vl", COMPUTER_ACTIONS),
    "browser": Table("qwen25vl", BROWSER_ACTIONS),
}
#: The tool each form factor is given.
TOOL = {"phone": MOBILE, "computer": COMPUTER, "browser": COMPUTER}
WORDING = Wording(call="action={name}", extra="{call} does not take {arg!r}")
_DESCRIPTIONS = {
    "phone": (
        "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
        "* This is an interface to a mobile device with touchscreen. You can perform "
        "actions like clicking, typing, swiping, etc.\n"
        "* Some applications may take time to start or process actions, so you may need "
        "to wait and take successive screenshots to see the results of your actions.\n"
        "* The screen's resolution is {w}x{h}.\n"
        "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
        "center of the element. Don't click boxes on their edges unless asked."
    ),
    "computer": (
        "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
        "* This is an interface to a desktop GUI. You do not have access to a terminal "
        "or applications menu. You must click on desktop icons to start applications.\n"
        "* Some applications may take time to start or process actions, so you may need "
        "to wait and take successive screenshots to see the results of your actions.\n"
        "* The screen's resolution is {w}x{h}.\n"
        "* Whenever you intend to move the cursor to click on an element like an icon, "
        "you should consult a screenshot to determine the coordinates of the element "
        "before moving the cursor.\n"
        "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
        "center of the element. Don't click boxes on their edges unless asked."
    ),
    "browser": (
        "Use a mouse and keyboard to interact with a web page in a browser, and take "
        "screenshots.\n"
        "* This is an interface to a web browser showing one page. You can click, type, "
        "scroll, open a URL with `navigate` and go back with `back`.\n"
        "* Some pages may take time to load or process actions, so you may need to wait and "
        "take successive screenshots to see the results of your actions.\n"
        "* The screen's resolution is {w}x{h}.\n"
        "* Whenever you intend to move the cursor to click on an element like a link, "
        "you should consult a screenshot to determine the coordinates of the element "
        "before moving the cursor.\n"
        "* Make sure to click any buttons, links, icons, etc with the cursor tip in the "
        "center of the element. Don't click boxes on their edges unless asked."
    ),
}


def _param_schemas(entries: list[Entry]) -> dict[str, Any]:
    words = list(dict.fromkeys(e.name for e in entries))
    params = {name: [w for w in words if any(
        e.name == w and (name in e.consts or name in [a.name for a in e.args]) for e in entries)]
        for e in entries for name in [*e.consts, *(a.name for a in e.args)]}
    needed_by = {p: ", ".join(f"`action={w}`" for w in ws) for p, ws in params.items()}
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
        "direction": {"description": "One of up, down, left, right. Required only by "
                      f"{needed_by.get('direction')}.", "type": "string",
                      "enum": ["up", "down", "left", "right"]},
        "url": {"description": f"The URL to open. Required only by {needed_by.get('url')}.",
                "type": "string"},
        "status": {"description": "The status of the task. Required only by "
                   "`action=terminate`.", "type": "string", "enum": ["success", "failure"]},
    }
    first = {w: next(e for e in entries if e.name == w) for w in words}
    action_help = "The action to perform. The available actions are:\n" + "\n".join(
        f"* `{w}`: {first[w].description}" for w in words
    )
    properties = {"action": {"description": action_help, "enum": words, "type": "string"}}
    properties |= {p: s for p, s in schemas.items() if p in params}
    return {"properties": properties, "required": ["action"], "type": "object"}


class Qwen25VLDialect(Dialect):
    name = "qwen25vl"
    stop = closing_stop = ("</tool_call>",)
    action_marker = _OPEN_TAG
    space = RESIZED_PIXELS

    def __init__(self, form_factor) -> None:
        super().__init__(form_factor)
        self.tool = TOOL[form_factor]
        self.table = TABLES[form_factor]
        self.kinds = self.table.kinds
        # A reply may name either tool; computer_use reads with this form factor's words.
        self.tables = {MOBILE: TABLES["phone"], COMPUTER: TABLES[
            "computer" if form_factor == "phone" else form_factor]}

    # Prompt ---------------------------------------------------------------------------------
    def system_prompt(self, action_kinds: Iterable[str], screen: Screen) -> str:
        h, w = screen.resized_size()
        function = {
            "type": "function",
            "function": {
                "name_for_human": self.tool,
                "name": self.tool,
                "description": _DESCRIPTIONS[self.form_factor].format(w=w, h=h),
                "parameters": _param_schemas(self.table.listed(set(action_kinds))),
                "args_format": "Format the arguments as a JSON object.",
            },
        }
        return _SYSTEM.format(tool=json.dumps(function, ensure_ascii=False))

    def render_step(self, step: PastStep, index: int) -> list[Message]:
        """One line of the task progress; the step's screenshot first when it is kept."""
        line = f"Step {index + 1}: {_written_call(step.response)}; result: " \
            f"{step.feedback or 'done'}\n"
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
        entry, args = self.table.encode(action, self.space, screen)
        arguments = {"action": entry.name,
                     **{k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}}
        call = json.dumps({"name": self.tool, "arguments": arguments}, ensure_ascii=False)
        text = f"<tool_call>\n{call}\n</tool_call>"
        return f"{thought.strip()}\n{text}" if thought.strip() else text

    # Parse ----------------------------------------------------------------------------------
    def parse(self, text: str, screen: Screen) -> Action:
        if not text.strip():
            raise fail("the reply is empty", EXPECTED)
        text = strip_fences(text)
        # The first JSON object after <tool_call> (or anywhere, if the tag was left out) is the
        # call; reading it honours quotes, so tags inside its strings do not count. A missing
        # </tool_call> at the end is fine; another <tool_call>, or another call object (in the
        # same tag or with no tags), after it is a second action. Tags are found in the text
        # itself, never in text.lower(), whose indices differ ('İ'.lower() is two characters).
        opening = _OPEN_TAG.search(text)
        brace = text.find("{", opening.end() if opening else 0)
        if brace < 0:
            raise fail("no tool call was found", EXPECTED)
        try:
            literal = extract_balanced(text, brace)
        except ValueError as exc:
            raise fail(f"the tool call cannot be read: {exc}", EXPECTED) from None
        rest = text[brace + len(literal):]
        if _OPEN_TAG.search(rest):
            raise fail("the reply holds more than one <tool_call>; write exactly one", EXPECTED)
        try:
            call = load_literal(literal)
        except ValueError as exc:
            raise fail(f"the tool call is not a JSON object: {exc}", EXPECTED) from None
        if not isinstance(call, dict):
            raise fail("the tool call is not a JSON object", EXPECTED)
        if _CALL_OBJECT.search(rest) or any(keys is None or _CALL_KEYS & keys
                                            for keys in objects_in(rest)):
            raise fail("the reply holds more than one action (a second tool call object follows "
                       "the first); write exactly one", EXPECTED)
        tool = call.get("name")
        if not isinstance(tool, str) or tool not in self.tables:
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
        table = self.tables[tool]
        name = args.get("action")
        given = {k: v for k, v in args.items() if k != "action" and v is not None}

        def unknown(word):
            what = f"unknown {tool} action {short(word)}" if word else "\"action\" is missing"
            return fail(f"{what}; the actions are {', '.join(table.names)}", EXPECTED)

        if not isinstance(name, str):
            raise unknown(name)
        entry = table.lookup(name, given, EXPECTED, unknown)
        required = [a.name for a in entry.args if a.required]
        optional = [f"{a.name} (optional)" for a in entry.args if not a.required]
        expected = f"{EXPECTED}; {tool} action={name} takes " + (
            ", ".join([*entry.consts, *required, *optional]) or "nothing")
        data = table.decode(entry, given, self.space, screen, expected, WORDING)
        return make_action(data, screen, expected)


def _written_call(reply: str) -> str:
    """The call object of a reply as the model wrote it, found as ``parse`` finds it (the first
    ``{`` after the first tag, in any case, read honouring quotes), so a thought that names
    ``<tool_call>`` or typed text holding ``</tool_call>`` cannot cut or pad it; the whole reply
    when it has no tagged call."""
    text = strip_fences(reply)
    opening = _OPEN_TAG.search(text)
    brace = text.find("{", opening.end()) if opening else -1
    if brace < 0:
        return reply.strip()
    # extract_balanced closes a cut-off call; the history shows only what was written.
    try:
        return text[brace : brace + len(extract_balanced(text, brace))].strip()
    except ValueError:  # a string that never ends runs to the end of the reply
        return text[brace:].strip()
