"""The confirmation gate judges a key that presses the focused element as a press on it: a model
that moves the focus to "Delete account" (Tab, the d-pad) and presses Enter or the space bar
(or types a line break) presses that button as surely as a tap on it would."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from actions.dialects import get_dialect
from agent.loop import Agent
from agent.safety import ConfirmationGate, GateRules
from core.actions import Action, Key
from envs.base import ElementInfo
from tests.adb_fakes import DumpDevice, fake_android_env, ui_node
from tests.agent_fakes import FakePhone, ListPolicy
from tests.conftest import require_tool
from tests.probes import wait_until
from trajectories.reader import load
from trajectories.recorder import Recorder

DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


class FocusedPhone(FakePhone):
    """A phone whose focused element is ``focused``; nothing is under any point."""

    def __init__(self, focused: ElementInfo | None) -> None:
        super().__init__()
        self.focused = focused

    def element_at(self, x, y):
        return None

    def focused_element(self):
        return self.focused


def parsed(action: dict) -> Action:
    return TypeAdapter(Action).validate_python(action)


PRESSES = [
    {"kind": "key", "key": "enter"},
    {"kind": "key", "key": "Return"},
    {"kind": "key", "key": "KP_Enter"},
    {"kind": "key", "key": "space"},
    {"kind": "key", "key": " "},
    {"kind": "hotkey", "keys": ["ctrl", "enter"]},
    {"kind": "enter"},  # the phone's Enter
    {"kind": "key", "key": "\n"},  # Playwright and pyautogui press Enter for a line break
    {"kind": "key", "key": "\r"},
    {"kind": "type", "text": "\n"},
    {"kind": "type", "text": "ok\r\n"},
    {"kind": "type", "text": " "},  # the space bar, on a focused element that is no field
    {"kind": "type", "text": "ok go"},
    {"kind": "key", "key": "KEYCODE_DPAD_CENTER"},  # adb's own names and numbers
    {"kind": "key", "key": "66"},
]
NOT_PRESSES = [
    {"kind": "key", "key": "tab"},
    {"kind": "key", "key": "down"},
    {"kind": "hotkey", "keys": ["shift", "tab"]},
    {"kind": "type", "text": "hello"},
    {"kind": "home"},
]


@pytest.mark.parametrize("action", PRESSES, ids=json.dumps)
def test_a_key_that_presses_a_focused_sensitive_button_is_sensitive(action):
    hit = ConfirmationGate(GateRules(), FocusedPhone(ElementInfo("Delete account")),
                           "deny").sensitive(parsed(action))
    assert hit is not None and hit.rule == "tap_text"
    assert "Delete account" in hit.reason
    # A focused element the env cannot read may be such a button (or, for a key that types,
    # a password field: either rule may ask first).
    hit = ConfirmationGate(GateRules(), FocusedPhone(ElementInfo("", opaque=True)),
                           "deny").sensitive(parsed(action))
    assert hit is not None
    hit = ConfirmationGate(GateRules(password_fields=False),
                           FocusedPhone(ElementInfo("", opaque=True)), "deny").sensitive(
        parsed(action))
    assert hit is not None and hit.rule == "tap_text"
    # Another button, no focus at all, or the rule switched off: nothing to ask.
    assert ConfirmationGate(GateRules(), FocusedPhone(ElementInfo("Next")),
                            "deny").sensitive(parsed(action)) is None
    assert ConfirmationGate(GateRules(), FocusedPhone(None), "deny").sensitive(
        parsed(action)) is None
    assert ConfirmationGate(GateRules(tap_text=None), FocusedPhone(ElementInfo("Delete")),
                            "deny").sensitive(parsed(action)) is None


@pytest.mark.parametrize("action", NOT_PRESSES, ids=json.dumps)
def test_keys_that_only_move_or_type_do_not_press(action):
    assert ConfirmationGate(GateRules(), FocusedPhone(ElementInfo("Delete account")),
                            "deny").sensitive(parsed(action)) is None


def test_spaces_typed_into_a_text_field_press_nothing():
    """In a field a space is text: a message box whose hint says "Send money" takes "hi there"
    without a question (a line break in a field is Enter, and is still judged)."""
    field = FocusedPhone(ElementInfo("Send money to Bob", field=True))
    gate = ConfirmationGate(GateRules(), field, "deny")
    assert gate.sensitive(parsed({"kind": "type", "text": "hi there"})) is None
    assert gate.sensitive(parsed({"kind": "type", "text": "hi\n"})).rule == "tap_text"


def test_a_space_typed_on_the_phone_is_judged_by_the_focused_node():
    """A focused Button reads as pressed by a typed space; a focused EditText (its hint in its
    text) takes the space as text."""
    space = parsed({"kind": "type", "text": "a b"})
    button = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 200), text="Delete contact", clickable=True, focused=True,
        class_name="android.widget.Button")))
    assert ConfirmationGate(GateRules(), button, "deny").sensitive(space).rule == "tap_text"
    for editable in ("android.widget.EditText", "android.widget.AutoCompleteTextView"):
        field = fake_android_env(DumpDevice(ui_node(
            (0, 0, 1080, 200), text="Send a payment note", clickable=True, focused=True,
            class_name=editable)))
        assert field.focused_element().field
        assert ConfirmationGate(GateRules(), field, "deny").sensitive(space) is None


def test_enter_on_a_focused_row_is_judged_by_what_the_row_says():
    """Enter presses a focused row as a tap on it would, so it reads as the row's children."""
    # The d-pad's focus on a text-less clickable row whose child reads "Delete chat".
    env = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 200), ui_node((40, 40, 600, 160), text="Delete chat"),
        clickable=True, focused=True)))
    assert env.focused_element().text == "Delete chat" == env.element_at(500, 100).text
    hit = ConfirmationGate(GateRules(), env, "deny").sensitive(parsed({"kind": "enter"}))
    assert hit is not None and hit.rule == "tap_text"


def test_enter_in_a_phone_text_field_is_judged_by_the_screens_buttons():
    """Enter in a one-line field runs the field's own action (Messages sends), which the UI
    dump does not name: it is judged as a press on any of the screen's buttons. A space stays
    text, and a screen with no such button lets Enter through. The field reads as its name, not
    as what is typed in it."""
    field = ui_node((0, 2200, 900, 2300), text="see you at 5", desc="Message", clickable=True,
                    focused=True, class_name="android.widget.EditText")
    compose = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400), ui_node((0, 0, 200, 200), desc="Back", clickable=True), field,
        # A text-less button reads as its child's text, as a tap on it would.
        ui_node((900, 2200, 1080, 2300), ui_node((920, 2220, 1060, 2280), text="Send"),
                clickable=True))))
    focused = compose.focused_element()
    assert focused.field and focused.text == "Message (Enter may press: Back, Send)"
    gate = ConfirmationGate(GateRules(), compose, "deny")
    for action in ({"kind": "enter"}, {"kind": "key", "key": "enter"},
                   {"kind": "type", "text": "see you at 5\n"}):
        hit = gate.sensitive(parsed(action))
        assert hit is not None and hit.rule == "tap_text" and "Send" in hit.reason, action
    assert gate.sensitive(parsed({"kind": "type", "text": "see you at 5"})) is None
    search = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400), ui_node((0, 0, 200, 200), desc="Back", clickable=True),
        ui_node((200, 0, 1080, 200), desc="Search", focused=True,
                class_name="android.widget.EditText"))))
    assert search.focused_element().text == "Search (Enter may press: Back)"
    assert ConfirmationGate(GateRules(), search, "deny").sensitive(parsed({"kind": "enter"})) \
        is None


def test_what_a_phone_field_holds_is_not_quoted_by_the_gate():
    """A card number typed as a secret and grouped by the app reads "4111 1111 ..." in the
    dump, which masking cannot find: the field is described by its name alone, so the gate's
    reason (recorded, and shown to the model) does not quote it."""
    checkout = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400),
        ui_node((0, 200, 1080, 300), text="4111 1111 1111 1111", desc="Card number",
                focused=True, class_name="android.widget.EditText"),
        ui_node((0, 400, 1080, 500), text="Pay now", clickable=True))))
    hit = ConfirmationGate(GateRules(), checkout, "deny").sensitive(parsed({"kind": "enter"}))
    assert hit is not None and "Pay now" in hit.reason and "Card number" in hit.reason
    assert "1111" not in hit.reason
    nameless = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400), ui_node((0, 200, 1080, 300), text="4111 1111 1111 1111",
                                    focused=True, class_name="android.widget.EditText"),
        ui_node((0, 400, 1080, 500), text="Pay now", clickable=True))))
    assert nameless.focused_element().text == "a text field (Enter may press: Pay now)"


def test_deny_keeps_enter_off_a_focused_send_button_on_the_phone(tmp_path):
    # A focused "Send" button (focus moved there with the d-pad).
    device = DumpDevice(ui_node((0, 0, 1080, 200), text="Send", clickable=True, focused=True))
    env = fake_android_env(device)
    gate = ConfirmationGate(GateRules(), env, "deny")
    policy = ListPolicy(['*FUNCTION*: Enter *ARGS*: {}', DONE])
    Agent(env, policy, get_dialect("qwen2vl", "phone"), gate=gate,
          recorder=Recorder(tmp_path / "traj")).run("Reply to Bob")
    step = load(tmp_path / "traj").steps[0]
    assert step.action["kind"] == "enter"
    assert step.gate.decision == "denied" and step.gate.rule == "tap_text"
    assert step.result.message.startswith("blocked by the safety gate")
    assert not any("KEYCODE_ENTER" in c for c in device.commands)  # Enter never reached it


PAGE = ('data:text/html,<input id="name" placeholder="Name" autofocus><button id="del" '
        'onclick="window.deleted = true">Delete account</button>')


def test_tab_then_enter_onto_a_delete_button_in_chromium_is_refused(tmp_path):
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(640, 400), start_url=PAGE) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        policy = ListPolicy(['*FUNCTION*: Key *ARGS*: {"key": "Tab"}',
                             '*FUNCTION*: Key *ARGS*: {"key": "Enter"}',
                             '*FUNCTION*: Key *ARGS*: {"key": "space"}', DONE])
        Agent(env, policy, get_dialect("qwen2vl", env.form_factor), gate=gate,
              recorder=Recorder(tmp_path / "traj")).run("Tidy my account")
        steps = load(tmp_path / "traj").steps
        assert steps[0].gate is None and steps[0].result.ok  # moving the focus presses nothing
        assert env.focused_element().text == "Delete account"
        assert [s.gate.decision for s in steps[1:3]] == ["denied", "denied"]
        assert [s.gate.rule for s in steps[1:3]] == ["tap_text", "tap_text"]
        assert env.page.evaluate("window.deleted === true") is False
        # The same key on a button that matches nothing goes through and presses it.
        env.page.set_content('<button onclick="window.pressed = true">Next</button>')
        env.page.focus("button")
        assert gate.sensitive(Key(key="Enter")) is None
        assert env.execute(Key(key="Enter")).ok
        assert env.page.evaluate("window.pressed === true") is True


def form_page(button: str, extra: str = "") -> str:
    """A form with a one-line field (focused) and a submit button; submitting sets window.sent."""
    return (f'data:text/html,<form onsubmit="window.sent = true; return false"><input id="card" '
            f'placeholder="Card number" autofocus>{extra}<button>{button}</button></form>')


def test_enter_in_a_field_is_judged_by_the_button_it_submits_in_chromium():
    """Enter in a one-line field presses its form's first submit button (implicit submission):
    Enter, or a typed line break, in the card field of a form whose button is "Pay now" is asked
    about; typing alone, a click on the field, and a form whose button is "Search" are not."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(640, 400), start_url=form_page("Pay now")) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        # The page's autofocus takes effect as chromium next draws it, not at load.
        focused = wait_until(env.focused_element, what="the autofocused field")
        assert focused.text == "Card number (Enter submits: Pay now)"
        for action in ({"kind": "key", "key": "Enter"}, {"kind": "type", "text": "4111\n"},
                       {"kind": "hotkey", "keys": ["shift", "enter"]}):
            hit = gate.sensitive(parsed(action))
            assert hit is not None and hit.rule == "tap_text" and "Pay now" in hit.reason
        assert gate.sensitive(parsed({"kind": "type", "text": "4111"})) is None
        assert env.element_at(60, 10).text == "Card number"  # a click does not submit
        # The submit button is the first one in tree order, one outside the form included.
        env.page.set_content('<form id="f" onsubmit="window.sent = true; return false">'
                             '<input autofocus></form><input type="submit" form="f" '
                             'value="Transfer funds">')
        env.page.focus("input")
        assert gate.sensitive(Key(key="Enter")).rule == "tap_text"
        env.page.goto(form_page("Search", extra='<button type="button">Delete</button>'))
        env.page.focus("#card")
        assert gate.sensitive(Key(key="Enter")) is None
        assert env.execute(Key(key="Enter")).ok
        assert env.page.evaluate("window.sent === true") is True
        # A textarea breaks a line on Enter: it submits nothing.
        env.page.set_content('<form><textarea autofocus></textarea><button>Pay</button></form>')
        env.page.focus("textarea")
        assert gate.sensitive(Key(key="Enter")) is None


@pytest.mark.parametrize("focused, button", [
    ('<input type="checkbox" autofocus> I agree', "<button>Pay $500 now</button>"),
    ('<input type="radio" name="r" autofocus>', "<button>Pay $500 now</button>"),
    ('<input type="range" autofocus>', "<button>Pay $500 now</button>"),
    ("<input autofocus>", '<button><img alt="Pay $500 now"></button>'),
    ("<input autofocus>", '<button title="Delete account">&%23x1F5D1;</button>'),
    ("<input autofocus>", '<input type="image" alt="Pay $500 now">'),
])
def test_enter_from_any_input_that_submits_is_judged_by_every_name_of_its_button(focused,
                                                                                button):
    """Chromium submits a form on Enter from a checkbox, radio or range input too, and through
    an image input, which form.elements leaves out; the button is known by all its names (an
    icon's alt, a title), as a click on it is. Each of these forms was submitted unasked."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    page = (f'data:text/html,<form onsubmit="window.sent = true; return false">{focused}'
            f'{button}</form>')
    with BrowserEnv(viewport=(640, 400), start_url=page) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        wait_until(env.focused_element, what="the autofocused input")
        hit = gate.sensitive(Key(key="Enter"))
        assert hit is not None and hit.rule == "tap_text", env.focused_element()
        # What the gate judges is what chromium does: Enter there submits the form.
        assert env.execute(Key(key="Enter")).ok
        assert env.page.evaluate("window.sent === true") is True


ICONS = ('data:text/html,<body style="margin:0">'
         '<button id="a" title="Delete account" style="width:90px;height:60px">&%23x1F5D1;</button>'
         '<button id="b" style="width:90px;height:60px"><img alt="Pay $500" width="20" '
         'height="20"></button>'
         '<input id="c" type="image" alt="Delete" style="width:90px;height:60px">'
         '<button id="d" aria-labelledby="lbl" style="width:90px;height:60px">&%23x27A4;</button>'
         '<span id="lbl" style="position:absolute;left:0;top:300px">Send money</span>'
         '<input id="note" placeholder="Payment note" style="position:absolute;top:100px">'
         '<label style="position:absolute;top:150px"><input id="ok" type="checkbox">'
         'I confirm the transfer</label></body>')


def test_icon_buttons_read_as_their_names_and_a_typed_space_presses_them_in_chromium(tmp_path):
    """A button is known by its title, its icon's alt, an image input's alt, the element that
    aria-labelledby names or its label: each is asked about as its caption would be. A space
    typed with the focus on it presses it; typed into a field, it is text."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(640, 400), start_url=ICONS) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        for x, said in ((45, "Delete account"), (135, "Pay $500"), (225, "Delete"),
                        (315, "Send money")):
            hit = gate.sensitive(parsed({"kind": "click", "x": x, "y": 30}))
            assert hit is not None and hit.rule == "tap_text" and said in hit.reason, (x, hit)
        env.page.focus("#ok")
        assert "I confirm the transfer" in env.focused_element().text
        env.page.focus("#note")
        assert env.focused_element().field
        assert gate.sensitive(parsed({"kind": "type", "text": "for the rent"})) is None

    bin_page = ('data:text/html,<title>start</title><button autofocus title="Delete account" '
                'onclick="document.title = \'deleted\'">&%23x1F5D1;</button>')
    with BrowserEnv(viewport=(640, 400), start_url=bin_page) as env:
        policy = ListPolicy(['*FUNCTION*: Type *ARGS*: {"text": " "}',
                             '*FUNCTION*: Key *ARGS*: {"key": "\\n"}', DONE])
        Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
              gate=ConfirmationGate(GateRules(), env, "deny"),
              recorder=Recorder(tmp_path / "traj")).run("Tidy my account")
        steps = load(tmp_path / "traj").steps
        assert [s.gate and s.gate.decision for s in steps[:2]] == ["denied", "denied"], steps
        assert env.page.title() == "start"  # the button was never pressed


def test_a_button_labelled_by_css_generated_content_reads_as_its_label_in_chromium():
    """A page can write a button's word with CSS alone (``::before``/``::after`` content, from a
    string or an attribute), which innerText leaves out: it shows, so the gate reads it."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    page = ('data:text/html,<style>button{width:90px;height:60px;padding:0}'
            '%23a::before{content:"Del" "ete"} %23b span::after{content:attr(data-word)}'
            '%23c::after{content:"\\2192"} %23d i::before{content:"De"}</style>'
            '<body style="margin:0"><button id="a"></button><button id="b"><span '
            'data-word="Pay $500"></span></button><button id="c">Next</button>'
            '<button id="d"><i></i>lete</button></body>')
    with BrowserEnv(viewport=(640, 400), start_url=page) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        # The last: the word's head written by CSS, its tail by the page, read in place.
        for x, said in ((45, "Delete"), (135, "Pay $500"), (315, "Delete")):
            hit = gate.sensitive(parsed({"kind": "click", "x": x, "y": 30}))
            assert hit is not None and hit.rule == "tap_text" and said in hit.reason, (x, hit)
        assert gate.sensitive(parsed({"kind": "click", "x": 225, "y": 30})) is None
        assert "Next\u2192" in env.element_at(225, 30).text


def test_labels_svg_and_field_values_read_as_what_a_press_presses_in_chromium():
    """A click on a label presses the control it names (a "Pay now" button behind "Continue");
    an SVG control reads as its text (SVG has no innerText); a field reads as its name, never as
    what is typed in it (a card number the page regrouped, which masking cannot find)."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    box = "position:absolute;left:0;width:200px;height:40px;margin:0;top:"
    svg = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    page = ('data:text/html,<body style="margin:0">'
            f'<label for="pay" style="{box}0;display:block">Continue</label>'
            f'<label style="{box}50px;display:block"><span>Go on</span> <button type="button" '
            'onclick="window.done = true">Pay now</button></label>'
            f'<button id="pay" type="button" onclick="window.done = true" style="{box}300px">'
            'Pay now</button>'
            f'<svg {svg} style="{box}100px"><g onclick="window.done = true" style="cursor:pointer"><rect width="200" '
            'height="40" fill="red"/><text x="50" y="25">Delete</text></g></svg>'
            f'<svg {svg} style="{box}150px"><a xlink:href="%23gone"><rect width="200" '
            'height="40"/><text x="50" y="25" fill="white">Delete</text></a></svg>'
            f'<input id="card" aria-label="Card number" style="{box}200px">'
            # A button in an editable region is still pressed; a read-only value is the page's.
            f'<div contenteditable style="{box}250px"><button type="button">Delete account'
            f'</button></div><input readonly aria-label="Card to pay with" '
            f'value="4111 1111 1111 1111" style="{box}350px">'
            f'<button style="{box}400px"><svg {svg} width="20" height="20"><title>Delete'
            '</title><rect width="20" height="20"/></svg></button>'
            # What an SVG draws: no style sheet, description or hidden text, a word apart.
            f'<svg {svg} style="{box}450px;cursor:pointer" onclick=""><style>'
            f'{".c{fill:red} " * 60}</style><desc>Keep</desc><rect width="200" height="40"/>'
            '<text x="5" y="25">Confirm</text><text x="90" y="25"><tspan>De</tspan><tspan '
            'font-weight="bold">lete</tspan></text><text display="none">Pay</text></svg>'
            f'<input type="password" readonly value="S3cr3t-h0rse" aria-label="Your password" '
            f'style="{box}500px"><input readonly value="Delete account" style="{box}560px">'
            '</body>')
    with BrowserEnv(viewport=(400, 620), start_url=page) as env:
        gate = ConfirmationGate(GateRules(), env, "deny")
        assert env.element_at(100, 470).text == "Confirm Delete"
        # A read-only field reads as its names, never as what is in it.
        assert env.element_at(5, 360).text == "Card to pay with"
        assert env.element_at(5, 510).text == "Your password"
        # What one holds is still judged (a page may make one a button), never quoted.
        held = gate.sensitive(parsed({"kind": "click", "x": 5, "y": 570}))
        assert held.rule == "tap_text" and "matches 'Delete'" in held.reason
        assert "account" not in held.reason
        for y, said in ((20, "Pay now"), (70, "Pay now"), (120, "Delete"), (170, "Delete"),
                        (260, "Delete account"), (360, "Card to pay with"), (410, "Delete")):
            hit = gate.sensitive(parsed({"kind": "click", "x": 5, "y": y}))
            assert hit is not None and hit.rule == "tap_text" and said in hit.reason, (y, hit)
        assert "Continue" in env.element_at(5, 20).text
        # What the gate judges is what chromium does: the click on the label pressed the button.
        assert env.execute(parsed({"kind": "click", "x": 5, "y": 20})).ok
        assert env.page.evaluate("window.done === true") is True
        env.page.fill("#card", "4111 1111 1111 1111")
        env.page.focus("#card")
        assert env.focused_element().text == env.element_at(100, 220).text == "Card number"
        # A piece of SVG text placed on a line of its own is a word apart.
        env.page.set_content(f'<svg {svg} width="300" height="60" style="cursor:pointer" '
                             'onclick=""><text><tspan x="0" y="20">Keep</tspan><tspan x="0" '
                             'y="45">account</tspan></text></svg>')
        assert env.element_at(15, 22).text == "Keep account"


def test_a_press_on_the_icon_of_a_row_that_script_makes_clickable_reads_as_the_row_in_chromium():
    """A row that handles clicks in script (an onclick attribute, or a listener), which the page
    shows as clickable with a pointer cursor, is pressed by a click on its icon: the click is
    judged by the row's text, as on android, not by the icon's (none). A row nobody can click
    stays the icon's, and so does a dialog's text in a backdrop that closes on a click, or a
    paragraph of a page whose body takes every click."""
    require_tool("chromium")
    from envs.browser import BrowserEnv

    icon = '<span style="display:inline-block;width:50px;height:50px"></span>'
    row = 'style="position:absolute;left:0;width:300px;height:50px;cursor:pointer;top:'
    page = ('data:text/html,<body style="margin:0" onclick="">'
            f'<div onclick="document.title = \'deleted\'" {row}0">{icon}Delete account</div>'
            f'<div id="pay" {row}60px">{icon}<b>Pay</b> $500</div>'
            f'<div {row}120px;cursor:auto">{icon}Delete notes</div>'
            '<div onclick="this.remove()" style="position:absolute;top:180px;width:400px;'
            'height:100px;cursor:pointer"><div style="cursor:default"><p style="margin:0">'
            'Your total is $40.</p><p>Pay it below.</p></div></div>'
            '<p style="position:absolute;top:300px;margin:0">Your account</p><p style="position:'
            'absolute;top:330px">Delete it below.</p></body>')
    with BrowserEnv(viewport=(400, 400), start_url=page) as env:
        env.page.evaluate("document.getElementById('pay').addEventListener('click', () => "
                          "document.title = 'paid')")
        gate = ConfirmationGate(GateRules(), env, "deny")
        for y, said in ((25, "Delete account"), (85, "Pay $500")):
            hit = gate.sensitive(parsed({"kind": "click", "x": 25, "y": y}))
            assert hit is not None and hit.rule == "tap_text" and said in hit.reason, (y, hit)
        for x, y in ((25, 145), (60, 190), (60, 320)):
            assert gate.sensitive(parsed({"kind": "click", "x": x, "y": y})) is None, (x, y)
        # What the gate judges is what chromium does: the click on the icon reaches the row.
        assert env.execute(parsed({"kind": "click", "x": 25, "y": 25})).ok
        assert env.page.title() == "deleted"
