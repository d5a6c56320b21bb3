"""The confirmation gate: its rules, its three modes, what the model is told and what the
trajectory records (a fake phone with a known layout), and its rules file."""

from __future__ import annotations

import json
import sys

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent
from agent.safety import ConfirmationGate, GateRules, load_rules
from core.actions import Enter, Navigate, OpenApp, Tap, Type
from envs.base import AppTarget, ElementInfo, EnvError, EnvGone
from tests.adb_fakes import DumpDevice, FakeAdbDevice, fake_android_env, ui_node
from tests.agent_fakes import FakePhone, ListPolicy, TextStream
from trajectories.export import export
from trajectories.reader import load
from trajectories.recorder import Recorder

# (500, 250) and (500, 750) of [0, 1000) on the fake phone's 1080x2400 screen.
TAP_PAY = '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}'
TAP_NOTE = '*FUNCTION*: Tap *ARGS*: {"point": (500, 750)}'
TYPE_PIN = '*FUNCTION*: Type *ARGS*: {"text": "1234"}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


class LaidOutPhone(FakePhone):
    """A 'Pay now' button on the top half, a note field below; the field is a password field
    once ``password`` is set."""

    def __init__(self, password: bool = False) -> None:
        super().__init__()
        self.password = password

    def element_at(self, x: int, y: int) -> ElementInfo | None:
        return ElementInfo("Pay now") if y < 1200 else ElementInfo("Note", password=self.password)

    def focused_element(self) -> ElementInfo | None:
        return ElementInfo("", password=self.password)


def run(replies, env, mode, tmp_path, rules=None, answers=None):
    asked: list[str] = []

    def ask(question: str):
        asked.append(question)
        return answers.pop(0)

    gate = ConfirmationGate(rules or GateRules(), env, mode, ask=ask if answers is not None
                            else None)
    policy = ListPolicy(replies)
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor), gate=gate,
                  recorder=Recorder(tmp_path / "traj"))
    result = agent.run("Pay the bill")
    return result, policy, load(tmp_path / "traj"), asked


def test_deny_refuses_a_matching_tap_tells_the_model_and_records_it(tmp_path):
    env = LaidOutPhone()
    result, policy, traj, _ = run([TAP_PAY, TAP_NOTE, DONE], env, "deny", tmp_path)
    assert result.status == "success"
    assert env.executed == [Tap(x=540, y=1800)]  # the note tap ran, the pay tap did not
    refused, allowed, _ = traj.steps
    assert refused.gate.decision == "denied" and refused.gate.rule == "tap_text"
    assert refused.gate.by == "--deny-sensitive" and "'Pay now'" in refused.gate.reason
    assert not refused.result.ok and "blocked by the safety gate" in refused.result.message
    assert allowed.gate is None and allowed.result.ok
    # The refusal and its reason are in the model's next prompt.
    second = "".join(m.text() for m in policy.requests[1].prompt.messages)
    assert "blocked by the safety gate" in second and "--deny-sensitive" in second
    # SFT data never teaches the refused action: its step is left out, and an episode sample
    # shows it as context only.
    summary = export([tmp_path / "traj"], "qwen2vl", "step", tmp_path / "sft.jsonl")
    assert (summary.samples, summary.skipped_steps) == (2, 1)
    export([tmp_path / "traj"], "qwen2vl", "episode", tmp_path / "sft.jsonl")
    (sample,) = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    trained = ["".join(p["text"] for p in m["content"] if p["type"] == "text")
               for m in sample["messages"] if m.get("loss")]
    assert [t.strip() for t in trained] == [allowed.response.strip(), traj.steps[2].response]


def test_yes_allows_and_records_the_decision(tmp_path):
    env = LaidOutPhone()
    _, _, traj, _ = run([TAP_PAY, DONE], env, "yes", tmp_path)
    assert env.executed == [Tap(x=540, y=600)]
    assert traj.steps[0].gate.decision == "allowed" and traj.steps[0].gate.by == "--yes"


def test_ask_follows_the_users_answer_and_refuses_without_a_terminal(tmp_path):
    env = LaidOutPhone()
    _, _, traj, asked = run([TAP_PAY, TAP_PAY, TAP_PAY, DONE], env, "ask", tmp_path,
                            answers=[False, True, None])
    assert env.executed == [Tap(x=540, y=600)]  # only the one the user allowed
    assert len(asked) == 3 and "Pay now" in asked[0]
    gates = [s.gate for s in traj.steps[:3]]
    assert [(g.decision, g.by) for g in gates] == [
        ("denied", "user"), ("allowed", "user"), ("denied", "no terminal")]
    assert "--yes" in gates[2].reason


def test_the_end_of_input_at_the_question_is_the_users_no(monkeypatch):
    """Ctrl-D at the question: recorded as "no terminal", though a person at one answered."""
    import io
    import sys

    from rich.console import Console

    from runtime.episode import ask_in_terminal

    for typed, answer in (("", False), ("y\n", True)):
        stdin = io.StringIO(typed)
        stdin.isatty = lambda: True
        monkeypatch.setattr(sys, "stdin", stdin)
        console = Console(file=io.StringIO(), force_terminal=True)
        assert ask_in_terminal(console)("Allow it?") is answer


def test_typing_into_a_password_field_is_sensitive(tmp_path):
    env = LaidOutPhone(password=True)
    _, _, traj, _ = run([TYPE_PIN, DONE], env, "deny", tmp_path)
    assert env.executed == []
    assert traj.steps[0].gate.rule == "password_field"
    # The same typing into a plain field passes without a decision.
    plain = LaidOutPhone(password=False)
    _, _, traj, _ = run([TYPE_PIN, DONE], plain, "deny", tmp_path / "plain")
    assert plain.executed == [Type(text="1234")] and traj.steps[0].gate is None


def test_open_app_and_navigation_rules():
    rules = GateRules(open_apps=["com.bank.app"], allowed_domains=["example.com"])
    gate = ConfirmationGate(rules, LaidOutPhone(), "deny")
    assert gate.sensitive(OpenApp(app="com.bank.app")).rule == "open_app"
    assert gate.sensitive(OpenApp(app="com.vlagent.notes")) is None
    assert gate.sensitive(Navigate(url="shop.example.com/cart")) is None
    hit = gate.sensitive(Navigate(url="evil.example.net"))
    assert hit.rule == "navigation" and "https://evil.example.net" in hit.reason
    # Rules switched off mark nothing.
    off = ConfirmationGate(GateRules(tap_text=None, password_fields=False), LaidOutPhone(True),
                           "deny")
    assert off.sensitive(Tap(x=1, y=1)) is None and off.sensitive(Type(text="x")) is None
    assert ConfirmationGate(GateRules(), LaidOutPhone(), "deny").sensitive(
        Navigate(url="anywhere.org")) is None  # no allowlist: navigation is not gated


@pytest.mark.parametrize("name", ["com.example.bank", "bank", "BANK", "Bank!", " b-a-n-k "])
def test_open_app_judges_what_the_env_opens_not_how_the_model_spells_it(tmp_path, name):
    # android's open_app opens a package by its last segment too, ignoring case and punctuation:
    # each spelling opens com.example.bank, so each is the listed app.
    device = FakeAdbDevice(packages=("com.android.settings", "com.example.bank"))
    env = fake_android_env(device)
    assert env.resolve_app(name).package == "com.example.bank"
    gate = ConfirmationGate(GateRules(open_apps=["com.example.bank"]), env, "deny")
    assert gate.sensitive(OpenApp(app=name)).rule == "open_app"
    # Through the loop: refused, and the app is not opened.
    policy = ListPolicy([f'*FUNCTION*: OpenApp *ARGS*: {{"app": {json.dumps(name)}}}', DONE])
    Agent(env, policy, get_dialect("qwen2vl", "phone"), gate=gate,
          recorder=Recorder(tmp_path / "traj")).run("Open the bank")
    assert load(tmp_path / "traj").steps[0].gate.decision == "denied"
    assert not any(c.startswith("monkey") for c in device.commands)
    # Listed by label (or by its last segment), the package name is the same app.
    by_label = ConfirmationGate(GateRules(open_apps=["Bank"]), env, "deny")
    assert by_label.sensitive(OpenApp(app=name)).rule == "open_app"
    # Another app, and a name no package ends in (a home-screen label), are not it.
    assert gate.sensitive(OpenApp(app="settings")) is None
    assert gate.sensitive(OpenApp(app="Banking")) is None
    # A name that opens no package goes to the home screen's labels; a label spelling the listed
    # package is still taken for it.
    assert env.resolve_app("COM.EXAMPLE.BANK").package is None
    assert gate.sensitive(OpenApp(app="COM.EXAMPLE.BANK")).rule == "open_app"


@pytest.mark.parametrize("name", ["firefox_beta", "Firefox Beta", "FIREFOX-BETA"])
def test_a_package_whose_last_segment_has_punctuation_opens_by_any_spelling(name):
    device = FakeAdbDevice(packages=("org.mozilla.firefox", "org.mozilla.firefox_beta"))
    env = fake_android_env(device)
    assert env.resolve_app(name).package == "org.mozilla.firefox_beta"
    assert env.execute(OpenApp(app=name)).ok
    assert device.commands[-1].startswith("monkey -p org.mozilla.firefox_beta ")
    assert env.resolve_app("!!").package is None  # no letters: no package, a label


def test_open_app_without_the_envs_word_compares_names():
    # An env that cannot tell what a name opens: names are compared ignoring case and
    # punctuation, and a package also by its last segment; two packages must be the same one.
    gate = ConfirmationGate(GateRules(open_apps=["com.example.bank", "My Wallet"]), LaidOutPhone(),
                            "deny")
    for name in ("com.example.bank", "bank", "BANK", "Bank!", "com.example.wallet.mywallet",
                 "my wallet", "MYWALLET", "org.wallet.MyWallet"):
        assert gate.sensitive(OpenApp(app=name)).rule == "open_app", name
    for name in ("com.other.bank", "notes", "wallet", "com.example.bank.notes"):
        assert gate.sensitive(OpenApp(app=name)) is None, name


def test_open_app_trusts_what_the_env_resolves():
    class ResolvingPhone(LaidOutPhone):
        """Opens "Money" as com.example.bank, as a home screen's label would."""

        def resolve_app(self, app):
            return AppTarget(package="com.example.bank" if app == "Money" else app)

    gate = ConfirmationGate(GateRules(open_apps=["com.example.bank"]), ResolvingPhone(), "deny")
    assert gate.sensitive(OpenApp(app="Money")).rule == "open_app"
    assert gate.sensitive(OpenApp(app="com.example.notes")) is None


@pytest.mark.parametrize("url", [
    "https://evil.com\\@example.com", "evil.com\\@example.com/", "https://evil.com\\.example.com",
    "https:\\\\evil.com\\@example.com", "HTTPS://evil.com\\@example.com", "https:evil.com",
    "https:///evil.com/@example.com", "https://ev\til.com\\@example.com",
    "https://evil.com\n\\@example.com", " \x01https://evil.com\\@example.com ",
    "https://example.com@evil.com", "https://evil.com#@example.com", "//evil.com",
    "http://evil.com:80\\@example.com", "https://evil.com\x00.example.com",
])
def test_navigation_reads_the_host_as_a_browser_does(url):
    # A browser goes to evil.com for each (a backslash is a slash there; tabs and newlines
    # vanish), or nowhere (a NUL in a host): the rule must not take it for example.com.
    gate = ConfirmationGate(GateRules(allowed_domains=["example.com"]), LaidOutPhone(), "deny")
    hit = gate.sensitive(Navigate(url=url))
    assert hit is not None and hit.rule == "navigation"


@pytest.mark.parametrize("url", [
    "https://example.com\\@evil.com", "https://shop.example.com\\path", "example.com\\x",
    "https:\\\\example.com", "https://exa\tmple.com/", "HtTp:example.com",
])
def test_navigation_allows_what_a_browser_reads_as_an_allowed_host(url):
    gate = ConfirmationGate(GateRules(allowed_domains=["example.com"]), LaidOutPhone(), "deny")
    assert gate.sensitive(Navigate(url=url)) is None


def test_a_custom_pattern_replaces_the_default():
    gate = ConfirmationGate(GateRules(tap_text=r"\bnote\b"), LaidOutPhone(), "deny")
    assert gate.sensitive(Tap(x=1, y=2000)).rule == "tap_text"
    assert gate.sensitive(Tap(x=1, y=1)) is None  # "Pay now" no longer matches


def test_rules_load_from_json_and_toml_and_bad_files_fail_clearly(tmp_path):
    (tmp_path / "rules.json").write_text(json.dumps(
        {"tap_text": "wire", "open_apps": ["com.bank"], "allowed_domains": ["a.org"]}))
    (tmp_path / "rules.toml").write_text(
        'password_fields = false\ntap_text = "wire"\nopen_apps = ["com.bank"]\n')
    from_json = load_rules(tmp_path / "rules.json")
    from_toml = load_rules(tmp_path / "rules.toml")
    assert from_json.tap_text == from_toml.tap_text == "wire"
    assert from_json.open_apps == ["com.bank"] and from_json.allowed_domains == ["a.org"]
    assert from_json.password_fields and not from_toml.password_fields
    (tmp_path / "typo.json").write_text('{"tap_txt": "x"}')
    (tmp_path / "regex.json").write_text('{"tap_text": "(unclosed"}')
    for name, problem in (("typo.json", "tap_txt"), ("regex.json", "regular expression"),
                          ("missing.json", "No such file")):
        with pytest.raises(ValueError, match=problem) as info:
            load_rules(tmp_path / name)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("domain, problem", [
    ("*.example.com", "write example.com"), (".example.com", "write example.com"),
    ("example.com.", "without the dot"), ("https://example.com/", "the host alone"),
    ("example.com:8443", "the host alone"), ("2001:0db8::1", "url does: 2001:db8::1,"),
    ("fe80::1%eth0", "url does: fe80::1, with no zone"), (" example.com", "letters, digits"),
    ("", "letters, digits"),
])
def test_an_allowed_domain_that_matches_no_host_is_refused_where_it_is_given(tmp_path, domain,
                                                                             problem):
    """An allowlist entry that no host can match (a pattern, a url, a port) would block every
    page without a word: the rules file, ``--allow-domain`` and the browser env refuse it."""
    from envs.browser import BrowserEnv
    from runtime.build import check_env
    from runtime.settings import RunError, RunSpec

    (tmp_path / "rules.json").write_text(json.dumps({"allowed_domains": ["ok.org", domain]}))
    with pytest.raises(ValueError, match=problem) as info:
        load_rules(tmp_path / "rules.json")
    assert "\n" not in str(info.value)
    with pytest.raises(RunError, match=f"--allow-domain: .*{problem}"):
        check_env(RunSpec(goal="x", model="scripted", env="browser", allowed_domains=(domain,)))
    with pytest.raises(ValueError, match=problem):
        BrowserEnv(allowed_domains=[domain])


@pytest.mark.parametrize("domain", ["example.com", "EXAMPLE.com", "127.0.0.1", "::1",
                                    "localhost", "my_host.lan", "xn--bcher-kva.de",
                                    "b\u00fccher.de"])
def test_allowed_domains_a_host_can_match_are_taken(domain):
    assert GateRules(allowed_domains=[domain]).allowed_domains == [domain]


def test_a_tap_presses_what_is_drawn_on_top_as_android_hands_it_the_touch():
    """A bottom sheet over a list: its "Delete" row (drawn later, as large as the list row
    under it) takes the tap, and so does a small "Send" button floating over a wide row. A view
    that is not clickable lets the touch through to the one below, and a clickable child takes
    it before its clickable parent. Smallest-first read the list row under the sheet, and the
    tap deleted a contact under --deny-sensitive."""
    env = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400),
        ui_node((0, 0, 1080, 2400),  # the list
                ui_node((48, 2094, 1032, 2251), text="Person 09", clickable=True),
                ui_node((0, 1000, 1080, 1200), ui_node((900, 1050, 1000, 1150), text="i"),
                        text="Person 05", clickable=True),
                ui_node((0, 1400, 1080, 1600), text="Person 07", clickable=True)),
        ui_node((0, 1900, 1080, 2400),  # the sheet
                ui_node((48, 2171, 1032, 2328), text="Delete", clickable=True)),
        ui_node((0, 800, 1080, 1300),  # a layout over the list, clicking nothing
                ui_node((880, 1030, 1020, 1170), text="Send", clickable=True)),
        ui_node((0, 1300, 1080, 1700), text="tip: swipe to see more"))))
    gate = ConfirmationGate(GateRules(), env, "deny")
    for (x, y), text in [((540, 2200), "Delete"), ((950, 1100), "Send"),
                         ((100, 1100), "Person 05"), ((100, 1500), "Person 07")]:
        assert env.element_at(x, y).text == text, (x, y)
    assert gate.sensitive(Tap(x=540, y=2200)).rule == "tap_text"
    assert gate.sensitive(Tap(x=950, y=1100)).rule == "tap_text"
    assert gate.sensitive(Tap(x=100, y=1500)) is None


def test_a_tap_anywhere_on_a_clickable_row_is_judged_by_the_row():
    # A clickable "Pay now" row: an icon, its label, empty space. Each tap presses the row.
    env = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400),
        ui_node((0, 0, 1080, 200),
                ui_node((40, 40, 160, 160)),  # the icon
                ui_node((200, 40, 700, 160), text="Pay now"),
                clickable=True),
        ui_node((0, 300, 1080, 500), ui_node((40, 340, 160, 460)),
                ui_node((200, 340, 700, 460), text="Notes"), clickable=True),
        ui_node((0, 600, 1080, 800), ui_node((40, 640, 700, 760), text="Delete all")))))
    gate = ConfirmationGate(GateRules(), env, "deny")
    for x, y in [(100, 100), (400, 100), (900, 100), (5, 5)]:
        assert env.element_at(x, y).text == "Pay now", (x, y)
        hit = gate.sensitive(Tap(x=x, y=y))
        assert hit.rule == "tap_text" and "'Pay now'" in hit.reason, (x, y)
    for x, y in [(100, 400), (900, 400)]:  # another row, the same shape: not sensitive
        assert env.element_at(x, y).text == "Notes" and gate.sensitive(Tap(x=x, y=y)) is None
    # Nothing clickable: the smallest node, by its own text only (the empty part of a plain
    # layout presses nothing, whatever its children say).
    assert env.element_at(400, 700).text == "Delete all"
    assert gate.sensitive(Tap(x=400, y=700)).rule == "tap_text"
    assert env.element_at(900, 700).text == "" and gate.sensitive(Tap(x=900, y=700)) is None
    assert env.element_at(500, 1200).text == ""  # the screen's own layout
    assert env.element_at(2000, 100) is None  # off every node


def test_a_clickable_node_reads_as_its_own_text_else_its_descendants():
    env = fake_android_env(DumpDevice(
        # Its own content-desc names it: the texts below it do not count.
        ui_node((0, 0, 1080, 200), ui_node((40, 40, 500, 160), text="Alice"),
                ui_node((600, 40, 1000, 160), text="5 EUR"), desc="Open chat", clickable=True),
        # Nested children, deeper than one level: their texts in document order.
        ui_node((0, 300, 1080, 600),
                ui_node((0, 300, 1080, 450),
                        ui_node((20, 320, 120, 420)),
                        ui_node((200, 320, 600, 420), text="Confirm"),
                        ui_node((600, 320, 1000, 420), ui_node((610, 330, 990, 410),
                                                               desc="transfer of 5 EUR"))),
                ui_node((0, 450, 1080, 600), text="to Bob"),
                clickable=True),
        # A clickable node inside a clickable row is pressed itself; the row's other parts
        # read as all the row's texts, the button's included.
        ui_node((0, 700, 1080, 900), ui_node((40, 740, 500, 860), text="Shopping list"),
                ui_node((800, 740, 1000, 860), ui_node((820, 760, 880, 840)), desc="Delete",
                        clickable=True),
                clickable=True),
        # Its own text, with no children.
        ui_node((0, 1000, 1080, 1200), text="Buy", clickable=True)))
    gate = ConfirmationGate(GateRules(), env, "deny")
    assert env.element_at(100, 100).text == "Open chat"
    assert gate.sensitive(Tap(x=100, y=100)) is None
    for x, y in [(50, 350), (900, 550), (700, 370), (1050, 590)]:
        assert env.element_at(x, y).text == "Confirm transfer of 5 EUR to Bob", (x, y)
        assert gate.sensitive(Tap(x=x, y=y)).rule == "tap_text"
    assert env.element_at(850, 800).text == "Delete"  # the button's icon presses the button
    assert env.element_at(300, 800).text == "Shopping list Delete"
    assert gate.sensitive(Tap(x=300, y=800)).rule == "tap_text"
    assert env.element_at(500, 1100).text == "Buy"
    assert gate.sensitive(Tap(x=500, y=1100)).rule == "tap_text"
    # A tap on a custom pattern's word deep in a row.
    custom = ConfirmationGate(GateRules(tap_text=r"\bbob\b"), env, "deny")
    assert custom.sensitive(Tap(x=50, y=350)).rule == "tap_text"
    assert custom.sensitive(Tap(x=100, y=100)) is None


def test_the_focused_field_is_read_from_the_dump():
    env = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400), ui_node((0, 0, 1080, 200), text="PIN", focused=True, password=True),
        ui_node((0, 300, 1080, 500), text="Note"))))
    assert env.focused_element().password
    assert ConfirmationGate(GateRules(), env, "deny").sensitive(
        Type(text="1234")).rule == "password_field"
    plain = fake_android_env(DumpDevice(ui_node((0, 0, 1080, 200), text="Note", focused=True)))
    assert not plain.focused_element().password
    assert ConfirmationGate(GateRules(), plain, "deny").sensitive(Type(text="1234")) is None
    # No node focused in view: the focus may be on a field scrolled out of it (the dump lists
    # what is in view), where a typed PIN or an Enter that pays still goes. It read as no focus.
    away = fake_android_env(DumpDevice(ui_node((0, 0, 1080, 200), text="Pay now",
                                               clickable=True)))
    assert away.focused_element().opaque
    gate = ConfirmationGate(GateRules(), away, "deny")
    assert gate.sensitive(Type(text="1234")).rule == "password_field"
    assert gate.sensitive(Enter()).rule == "tap_text"


class OpaquePhone(LaidOutPhone):
    """An env that cannot look at what is under the point or focused (``ElementInfo.opaque``)."""

    def element_at(self, x, y):
        return ElementInfo("", opaque=True)

    def focused_element(self):
        return ElementInfo("", opaque=True)


def test_an_element_the_env_cannot_inspect_is_sensitive():
    gate = ConfirmationGate(GateRules(), OpaquePhone(), "deny")
    hit = gate.sensitive(Tap(x=1, y=1))
    assert hit.rule == "tap_text" and "cannot inspect" in hit.reason
    hit = gate.sensitive(Type(text="1234"))
    assert hit.rule == "password_field" and "cannot inspect" in hit.reason
    # The rules switched off do not apply to it either.
    off = ConfirmationGate(GateRules(tap_text=None, password_fields=False), OpaquePhone(), "deny")
    assert off.sensitive(Tap(x=1, y=1)) is None and off.sensitive(Type(text="x")) is None


def test_a_gesture_that_presses_is_judged_as_a_press():
    """A swipe or drag that moves less than the touch slop is a tap where it lands, and one that
    ends on the element it started on presses it (Android clicks a view the finger never left; a
    browser clicks where the button went down and up); one that leaves the element does not."""
    from core.actions import Drag, Swipe

    gate = ConfirmationGate(GateRules(), LaidOutPhone(), "deny")  # "Pay now" above y=1200
    for gesture in (Swipe(x=540, y=600, x2=540, y2=600), Swipe(x=540, y=600, x2=560, y2=585),
                    Swipe(x=540, y=600, x2=540, y2=900), Swipe(x=100, y=100, x2=900, y2=1100),
                    Drag(x=540, y=600, x2=530, y2=610), Drag(x=100, y=100, x2=900, y2=1100)):
        hit = gate.sensitive(gesture)
        assert hit.rule == "tap_text" and "'Pay now'" in hit.reason, gesture
    for gesture in (Swipe(x=540, y=600, x2=540, y2=1800), Swipe(x=540, y=1800, x2=540, y2=600),
                    Drag(x=540, y=600, x2=540, y2=1800)):  # off the button
        assert gate.sensitive(gesture) is None, gesture


def test_a_phone_scroll_is_judged_as_the_swipe_the_phone_performs():
    """Android performs a scroll as a swipe: one shorter than the touch slop taps, and one whose
    finger stays on the view it went down on clicks that view; one that leaves it scrolls."""
    from core.actions import Scroll, Swipe

    env = fake_android_env(DumpDevice(ui_node(
        (0, 0, 1080, 2400), ui_node((0, 0, 1080, 400), text="Send money", clickable=True),
        ui_node((0, 400, 1080, 2400), text="Wide Send button", clickable=True))))
    gate = ConfirmationGate(GateRules(), env, "deny")
    short = Scroll(direction="down", x=540, y=200, amount=10)
    assert env.press_point(short) is not None
    assert gate.sensitive(short).rule == "tap_text"
    # A real scroll: down on the wide button, up on the other.
    assert gate.sensitive(Scroll(direction="down", x=540, y=600)) is None
    # Down on "Send money" and up still on it (the screen's top ends the move): a click.
    assert gate.sensitive(Scroll(direction="down", x=540, y=200)).rule == "tap_text"
    # Inside one large button, the finger never leaves it: a click as the phone performs it.
    x1, y1, x2, y2 = env._scroll_swipe(Scroll(direction="down", x=540, y=2000))
    assert 400 <= min(y1, y2) and max(y1, y2) < 2400
    hit = gate.sensitive(Scroll(direction="down", x=540, y=2000))
    assert hit.rule == "tap_text" and "Wide Send button" in hit.reason
    assert gate.sensitive(Swipe(x=540, y=1000, x2=100, y2=1000)).rule == "tap_text"


@pytest.mark.parametrize("action, sensitive", [
    ({"kind": "key", "key": "4"}, True),
    ({"kind": "key", "key": "space"}, True),
    ({"kind": "key", "key": "KEYCODE_A"}, True),  # adb's own key code types a letter
    ({"kind": "hotkey", "keys": ["ctrl", "v"]}, True),  # pastes
    ({"kind": "hotkey", "keys": ["shift", "a"]}, True),
    ({"kind": "key", "key": "enter"}, False),
    ({"kind": "key", "key": "backspace"}, False),
    ({"kind": "hotkey", "keys": ["shift", "tab"]}, False),
])
def test_a_key_that_may_type_into_a_password_field_is_sensitive(action, sensitive):
    from pydantic import TypeAdapter

    from core.actions import Action

    parsed = TypeAdapter(Action).validate_python(action)
    hit = ConfirmationGate(GateRules(), LaidOutPhone(password=True), "deny").sensitive(parsed)
    assert (hit is not None and hit.rule == "password_field") == sensitive
    assert ConfirmationGate(GateRules(), LaidOutPhone(), "deny").sensitive(parsed) is None


class FailingDumpPhone(LaidOutPhone):
    """An env whose UI dump fails, as uiautomator does while the screen moves."""

    def element_at(self, x=0, y=0):
        raise EnvError("uiautomator dump failed: could not get idle state")

    focused_element = element_at


def test_an_element_the_env_fails_to_look_up_is_unknown_not_the_end_of_the_run(tmp_path):
    from core.actions import Drag

    gate = ConfirmationGate(GateRules(), FailingDumpPhone(), "deny")
    for action in (Tap(x=1, y=1), Drag(x=1, y=1, x2=900, y2=900), Type(text="1")):
        assert "cannot inspect" in gate.sensitive(action).reason, action
    # A phone whose dump fails: a scroll at no point may still press where its finger lands.
    from core.actions import Scroll

    phone = fake_android_env(FakeAdbDevice(fail=lambda command: (
        (1, "ERROR: could not get idle state.") if "uiautomator" in command else None)))
    hit = ConfirmationGate(GateRules(), phone, "deny").sensitive(Scroll(direction="down"))
    assert hit.rule == "tap_text" and "cannot inspect" in hit.reason
    env = FailingDumpPhone()
    result, _, traj, _ = run([TAP_PAY, DONE], env, "yes", tmp_path)
    assert result.status == "success" and env.executed == [Tap(x=540, y=600)]
    assert traj.steps[0].gate.by == "--yes"


class GonePhone(LaidOutPhone):
    """A phone that went away between its screenshot and the gate's lookup (a browser that
    crashed, a device unplugged)."""

    def element_at(self, x=0, y=0):
        raise EnvGone("element lookup failed: device emulator-5554 is not reachable")

    focused_element = element_at


@pytest.mark.parametrize("mode", ["ask", "deny", "yes"])
def test_an_env_gone_at_the_gates_lookup_ends_the_run_as_an_env_error(tmp_path, mode):
    """It was read as an element the env cannot inspect, so the step was recorded as the
    gate's refusal ("no terminal to confirm it on (run with --yes ...)"), blaming the gate."""
    env = GonePhone()
    result, _, traj, asked = run([TAP_PAY, DONE], env, mode, tmp_path,
                                 answers=[] if mode == "ask" else None)
    assert asked == []
    assert result.status == "error" and "is not reachable" in result.reason
    assert env.executed == [] and all(step.gate is None for step in traj.steps)


def test_a_phone_dump_that_is_slow_is_unknown_and_one_whose_device_left_is_gone():
    """Only a device or adb server that is gone ends the run at the gate's lookup: a dump that
    ran past adb's timeout (a busy screen) is an element the env cannot inspect, as before."""
    from adbutils import AdbError, AdbTimeout

    def failing(exc):
        return fake_android_env(FakeAdbDevice(fail=lambda command: (
            exc if "uiautomator" in command else None)))

    slow = ConfirmationGate(GateRules(), failing(AdbTimeout("read timeout")), "deny")
    assert "cannot inspect" in slow.sensitive(Tap(x=5, y=5)).reason
    gone = ConfirmationGate(GateRules(), failing(AdbError("device 'fake-1' not found")), "deny")
    with pytest.raises(EnvGone, match="is not reachable"):
        gone.sensitive(Tap(x=5, y=5))


def test_the_question_shows_markup_in_screen_text_as_written():
    """Text from the page or the model in the question is never read as rich markup: a
    closing tag would crash the run, an opening one could hide part of the question."""
    import io
    import sys

    from rich.console import Console

    from runtime.episode import ask_in_terminal

    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system=None)
    question = "The agent wants to tap: it presses 'Pay [/b] now [black on black]x'. Allow it?"
    stdin = sys.stdin
    sys.stdin = io.StringIO("n\n")
    sys.stdin.isatty = lambda: True
    try:
        assert ask_in_terminal(console)(question) is False
    finally:
        sys.stdin = stdin
    assert "'Pay [/b] now [black on black]x'" in out.getvalue()


@pytest.mark.parametrize("stderr_is_a_terminal", [True, False])
def test_a_run_whose_output_goes_to_a_file_asks_on_stderr_or_not_at_all(monkeypatch,
                                                                       stderr_is_a_terminal):
    """``run ... > run.log`` in a terminal: the question went into the log, and the run waited
    for an answer to a question nobody saw."""
    from rich.console import Console

    from runtime.episode import ask_in_terminal

    log, stderr = TextStream(False), TextStream(stderr_is_a_terminal)
    monkeypatch.setattr(sys, "stdin", TextStream(True, "y\n"))
    monkeypatch.setattr(sys, "stderr", stderr)
    answer = ask_in_terminal(Console(file=log, width=200))("Pay now? Allow it?")
    assert log.getvalue() == ""
    if stderr_is_a_terminal:
        assert answer is True and "Pay now? Allow it?" in stderr.getvalue()
    else:
        assert answer is None and stderr.getvalue() == ""


def test_a_name_several_packages_end_in_opens_nothing_and_is_judged_by_name():
    """Which of two packages ending in "chrome" is meant is not known (an app may have named
    itself so): open_app refuses and names them; the gate compares the model's name."""
    device = FakeAdbDevice(packages=("org.example.chrome", "com.android.chrome"))
    env = fake_android_env(device)
    result = env.execute(OpenApp(app="Chrome"))
    assert not result.ok and "org.example.chrome, com.android.chrome" in result.message
    assert not any(c.startswith(("monkey", "input")) for c in device.commands)
    assert env.resolve_app("Chrome") == AppTarget(package=None, label="Chrome")
    gate = ConfirmationGate(GateRules(open_apps=["chrome"]), env, "deny")
    assert gate.sensitive(OpenApp(app="Chrome")).rule == "open_app"


class ServicePackagePhone(DumpDevice):
    """com.android.phone is installed but launches nothing (the telephony service); the home
    screen shows a "Phone" icon."""

    def _answer(self, command):
        answer = super()._answer(command)
        if command.startswith("monkey"):
            answer.output = "** No activities found to run, monkey aborted."
        return answer


def test_a_package_with_nothing_to_launch_falls_back_to_the_home_screen_icon():
    device = ServicePackagePhone(ui_node((0, 0, 200, 200), text="Phone", clickable=True))
    device.packages = ["com.android.phone"]
    env = fake_android_env(device)
    result = env.execute(OpenApp(app="Phone"))
    assert result.ok and "home screen" in result.message
    assert device.commands[-1] == "input tap 100 100"
    target = env.resolve_app("Phone")  # the gate checks both ways it may open
    assert (target.package, target.label) == ("com.android.phone", "Phone")
    result = env.execute(OpenApp(app="com.android.phone"))  # no icon says that
    assert not result.ok and "has no launcher activity" in result.message
    assert "home screen now" in result.message  # it says where it left the phone


def test_one_gate_review_takes_one_ui_dump_and_an_action_makes_it_stale():
    """The gate asks where a swipe starts and ends, then what it presses: on a real phone a
    dump takes a second or more, so one review reads one dump; after an action, or a new look
    at the screen, the next question dumps again."""
    from core.actions import Swipe

    device = DumpDevice(ui_node((0, 0, 1080, 2400), text="Wide Send button", clickable=True))
    env = fake_android_env(device)
    dumps = lambda: sum(c.startswith("uiautomator dump") for c in device.commands)  # noqa: E731
    gate = ConfirmationGate(GateRules(), env, "deny")
    assert gate.sensitive(Swipe(x=540, y=1800, x2=540, y2=600)).rule == "tap_text"
    assert dumps() == 1
    device.dump = device.dump.replace("Wide Send button", "Wide Next button")
    assert env.execute(Swipe(x=540, y=1800, x2=540, y2=600)).ok
    assert gate.sensitive(Swipe(x=540, y=1800, x2=540, y2=600)) is None  # the new screen
    assert dumps() == 2
    device.dump = device.dump.replace("Wide Next button", "Wide Pay button")
    env.observe()
    assert "Pay" in env.element_at(540, 600).text and dumps() == 3


class Labelled(FakePhone):
    """One button everywhere, labelled ``label``."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def element_at(self, x: int, y: int) -> ElementInfo | None:
        return ElementInfo(self.label)


@pytest.mark.parametrize("label", [
    "KAUF ABSCHLIESSEN",  # set in capitals by CSS: ß reads as SS
    "Kauf abschließen", "De\u00adlete account", "De\u200blete account", "D\u200delete",
    "\uff24\uff45\uff4c\uff45\uff54\uff45",  # fullwidth
    "De\u0301lete", "Be\u0301zahlen", "BEZAHLEN",
])
def test_a_pressed_label_is_matched_however_its_letters_are_written(label):
    """A page's way of writing a word (capitals, a soft hyphen, an invisible character, a
    compatibility form, an accent) must not take a button past the rule that names it."""
    rules = GateRules(tap_text=r"kauf abschließen|\bbezahlen\b|delete")
    assert ConfirmationGate(rules, Labelled(label), "deny").sensitive(Tap(x=1, y=1)) is not None


@pytest.mark.parametrize("label", [
    "D\u0435lete account",  # a Cyrillic "е"
    "\u03a1\u0430\u0443 now",  # a Greek "Ρ", then a Cyrillic "а" and "у": "Pay"
    "\u0455\u0435nd",  # Cyrillic "ѕ" and "е"
    "\u13a0elete",  # a Cherokee "Ꭰ"
    "\u0412UY NOW",  # a Cyrillic capital "В", which folds to a "в" that looks like no "b"
    "P\u0251y",  # a Latin alpha
    "\u1d05\u1d07\u029f\u1d07\u1d1b\u1d07",  # small capitals
])
def test_a_label_in_look_alike_letters_of_another_script_is_matched(label):
    """A hostile page that spells "Delete" with a Cyrillic "е" shows the word the rule names,
    and the model reads it so: the gate must read it so too."""
    hit = ConfirmationGate(GateRules(), Labelled(label), "deny").sensitive(Tap(x=1, y=1))
    assert hit is not None and hit.rule == "tap_text"


def test_a_rule_in_another_script_matches_its_own_letters():
    """Reading look-alikes as ASCII must not hide a word of the script they come from."""
    rules = GateRules(tap_text="удалить")
    gate = ConfirmationGate(rules, Labelled("Удалить чат"), "deny")
    assert gate.sensitive(Tap(x=1, y=1)) is not None
    assert ConfirmationGate(rules, Labelled("Далее"), "deny").sensitive(Tap(x=1, y=1)) is None


@pytest.mark.parametrize("label", ["Notes", "Weiter", "Deleted items", "Bezahlung", "Далее",
                                   "Удалить", "1 item, 10 \u20ac", "Настройки браузера",
                                   "Раунд 2"])
def test_labels_the_rule_does_not_name_stay_unasked(label):
    rules = GateRules(tap_text=r"kauf abschließen|\bbezahlen\b|delete\b")
    assert ConfirmationGate(rules, Labelled(label), "deny").sensitive(Tap(x=1, y=1)) is None
