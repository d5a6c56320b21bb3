"""Secrets: the model sees ``<secret:NAME>``, the device gets the value, and no file or line the
runtime writes holds it, down to a real run through the CLI on the virtual phone."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from rich.console import Console

from actions.dialects import get_dialect
from agent.backends.base import Completion
from agent.loop import SECRETS_TYPED, Agent
from agent.secrets import SecretError, Secrets, parse_secret_options
from core.actions import Tap, Type
from core.geometry import Screen
from envs.base import ElementInfo, EnvError, typed_done
from runtime.bench.plan import BenchSettings
from runtime.bench.results import read_results
from runtime.bench.runner import run_bench
from tests import bench_fakes
from tests.agent_fakes import FakePhone, ListPolicy
from tests.serve_fakes import EchoEngine
from trajectories.reader import load
from trajectories.recorder import Recorder

REPO = Path(__file__).resolve().parent.parent
VALUE = "hunter2-Tr0ub4dor"
TYPE_SECRET = '*FUNCTION*: Type *ARGS*: {"text": "pin: <secret:PIN>"}'
TYPE_UNKNOWN = '*FUNCTION*: Type *ARGS*: {"text": "<secret:OTHER>"}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'


def test_options_take_a_value_or_an_environment_variable():
    assert parse_secret_options(["A=x=y", "B"], environ={"B": "from-env"}) == {
        "A": "x=y", "B": "from-env"}
    for bad, problem in ((["1A=x"], "name"), (["C"], "not set"), (["D="], "empty")):
        with pytest.raises(SecretError, match=problem):
            parse_secret_options(bad, environ={})


def test_reveal_scrub_and_goal_check():
    secrets = Secrets({"PIN": "12", "LONG": "1234"})
    assert secrets.reveal(Type(text="<secret:PIN>/<secret:LONG>")) == Type(text="12/1234")
    assert secrets.reveal(Tap(x=1, y=2)) == Tap(x=1, y=2)
    with pytest.raises(SecretError, match="no secret called NOPE"):
        secrets.reveal(Type(text="<secret:NOPE>"))
    # The longer value is replaced whole, inside nested data and keys.
    assert secrets.scrub({"a 1234": ["x12", ("1234",)]}) == {
        "a <secret:LONG>": ["x<secret:PIN>", ("<secret:LONG>",)]}
    secrets.check_goal("type <secret:PIN>")
    with pytest.raises(SecretError, match="<secret:MISSING>"):
        secrets.check_goal("type <secret:MISSING>")
    assert "12" not in repr(secrets)


@pytest.mark.parametrize("values, text, scrubbed", [
    # A value that its own placeholder spells: the placeholder the model wrote stays one.
    ({"PW": "secret"}, "type <secret:PW>, not secret", "type <secret:PW>, not <secret:PW>"),
    ({"S": "S"}, "<secret:S>S", "<secret:S><secret:S>"),
    # A value inside another's placeholder, put there as the longer value was masked.
    ({"A": "secret123", "B": "secret"}, "secret123 / secret", "<secret:A> / <secret:B>"),
    ({"LONG": "pass:1", "P": "LONG"}, "pass:1", "<secret:LONG>"),
    # Overlapping values: the longer is masked whole (a name's tail is a password's head).
    ({"USER": "bob.smith", "PW": "smith2024x"}, "bob.smith2024x", "bob.<secret:PW>"),
])
def test_scrub_leaves_the_placeholders_in_a_text_as_they_are(values, text, scrubbed):
    """A recorded action that types ``<secret:PW>`` with PW's value "secret" was written as
    ``<<secret:PW>:PW>``: its replay and its export typed that."""
    assert Secrets(values).scrub(text) == scrubbed


def test_a_runs_settings_print_neither_its_secrets_nor_its_endpoint_key():
    """A RunSpec in a log line, a traceback's locals or a debugger shows no value to mask."""
    from runtime.settings import RunSpec

    spec = RunSpec(goal="log in", model="http://127.0.0.1:9/v1", served_model="m",
                   api_key="sk-live-4242", secrets={"PW": "hunter22"})
    assert "log in" in repr(spec)
    assert "sk-live-4242" not in repr(spec) and "hunter22" not in repr(spec)


class EchoingPhone(FakePhone):
    """Fails a typed action with a message that quotes the text, as adb's errors do."""

    def _execute(self, action):
        super()._execute(action)
        if action.kind == "type":
            raise EnvError(f"`input text {action.text}` failed")
        return "ok"


def test_the_env_gets_the_value_and_the_model_and_trajectory_only_the_placeholder(tmp_path):
    env = EchoingPhone()
    policy = ListPolicy([TYPE_SECRET, TYPE_UNKNOWN, DONE])
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"PIN": VALUE}))
    result = agent.run("Unlock with <secret:PIN>")
    assert result.status == "success"
    assert env.typed == f"pin: {VALUE}"
    first, unknown, _ = load(tmp_path / "traj").steps
    assert first.action == {"kind": "type", "text": "pin: <secret:PIN>"}
    assert first.result.message == "`input text pin: <secret:PIN>` failed"
    assert not unknown.result.ok and "no secret called OTHER" in unknown.result.message
    for request in policy.requests:
        assert VALUE not in json.dumps([m.text() for m in request.prompt.messages])
    for path in (tmp_path / "traj").rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert VALUE not in path.read_text(encoding="utf-8"), path


class CountingPhone(FakePhone):
    """Says what it typed by its count of characters, as the real envs do."""

    def _execute(self, action):
        super()._execute(action)
        if action.kind != "type":
            return "ok"
        return typed_done(action.text) + " with ADBKeyboard"


@pytest.mark.parametrize("ending", ["", "\\r\\n", "\\r"])  # as JSON escapes in the reply
def test_a_typed_secret_is_not_counted_to_the_model_or_the_trajectory(tmp_path, ending):
    """The envs count the text with each line break as one (a "\\r\\n" is one Enter)."""
    env = CountingPhone()
    plain = '*FUNCTION*: Type *ARGS*: {"text": "pin: "}'
    typing = '*FUNCTION*: Type *ARGS*: {"text": "pin: <secret:PIN>%s"}' % ending
    policy = ListPolicy([plain, typing, DONE])
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"PIN": VALUE}))
    assert agent.run("Unlock with <secret:PIN>").status == "success"
    assert env.typed == f"pin: pin: {VALUE}" + ending.replace("\\r", "\r").replace("\\n", "\n")
    first, second, _ = load(tmp_path / "traj").steps
    assert first.result.message == "typed 5 characters with ADBKeyboard"  # no secret: counted
    assert second.result.ok and second.result.message == f"{SECRETS_TYPED} with ADBKeyboard"
    assert SECRETS_TYPED in policy.requests[2].prompt.messages[-1].text()


@pytest.mark.parametrize("pin", ["00", "012", "1000"])
def test_a_short_secret_leaves_file_names_and_the_system_prompt_alone(tmp_path, pin):
    """A PIN's digits turn up in file names and in the runtime's own prompt ("from 0 to 1000"):
    masking there would break the trajectory or record a prompt the model never saw."""
    tap = '*FUNCTION*: Tap *ARGS*: {"point": (500,500)}'
    env = FakePhone()
    policy = ListPolicy([tap] * 13 + [DONE])
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"PIN": pin}))
    result = agent.run("Unlock with <secret:PIN>")
    assert result.status == "success", result.reason
    steps = load(tmp_path / "traj").steps
    assert len(steps) == 14
    for step, request in zip(steps, policy.requests):
        assert (tmp_path / "traj" / step.image).is_file()
        seen = [m for m in request.prompt.messages if m.role == "system"]
        kept = [m for m in step.prompt.messages if m.role == "system"]
        assert [m.text() for m in seen] == ["".join(p.text for p in m.content) for m in kept]


def test_a_gate_reason_cut_short_holds_no_part_of_a_secret(tmp_path):
    """The gate quotes at most 80 characters of what is pressed: the secret is masked first,
    so the cut cannot leave a piece of it that masking afterwards would not find."""
    from agent.safety import GateRules
    from runtime.episode import make_gate
    from runtime.settings import RunSpec

    iban = "DE89370400440532013000"

    class ConfirmPage(FakePhone):
        def element_at(self, x, y):
            return ElementInfo(text="Confirm: you are about to send 5.00 EUR from your main "
                                    f"account to {iban}")

    env = ConfirmPage()
    secrets = Secrets({"IBAN": iban})
    spec = RunSpec(goal="Send 5 EUR", model="scripted", env="android", confirm="deny")
    gate = make_gate(spec, GateRules(), env, Console(quiet=True), secrets)
    agent = Agent(env, ListPolicy(['*FUNCTION*: Tap *ARGS*: {"point": (500,500)}', DONE]),
                  get_dialect("qwen2vl", env.form_factor), recorder=Recorder(tmp_path / "traj"),
                  gate=gate, secrets=secrets)
    agent.run("Send 5 EUR to <secret:IBAN>")
    [step, _] = load(tmp_path / "traj").steps
    assert step.gate.decision == "denied" and "<secret:IBAN>" in step.gate.reason
    text = (tmp_path / "traj" / "steps.jsonl").read_text()
    assert iban[:8] not in text


@pytest.mark.parametrize(("value", "focus"), [
    ("123\n", ElementInfo(text="CVV (Enter submits: Pay now)", field=True)),  # Enter submits
    ("open sesame", ElementInfo(text="Pay now")),  # a space presses a focused button
])
def test_the_gate_judges_a_typed_text_with_its_secrets_values_in_place(tmp_path, value, focus):
    """A value's line break is an Enter on the device, and its space a press of the space bar:
    the gate judged the placeholder the model wrote, which has neither, and let the form's
    "Pay now" be pressed under --deny-sensitive. The question and the record still show only
    the placeholder."""
    from agent.safety import ConfirmationGate, GateRules

    class PaymentForm(FakePhone):
        def focused_element(self):
            return focus

    env, secrets = PaymentForm(), Secrets({"CVV": value})
    asked: list[str] = []
    gate = ConfirmationGate(GateRules(), env, "ask", ask=lambda q: asked.append(q) or False,
                            hide=secrets.scrub)
    Agent(env, ListPolicy(['*FUNCTION*: Type *ARGS*: {"text": "<secret:CVV>"}', DONE]),
          get_dialect("qwen2vl", env.form_factor), recorder=Recorder(tmp_path / "traj"),
          gate=gate, secrets=secrets).run("Pay with the card's <secret:CVV>")
    assert env.typed == ""  # refused: nothing reached the device
    [question] = asked
    # As the question writes a text (with repr: "123\\n"), the value never shows.
    assert "<secret:CVV>" in question and repr(value)[1:-1] not in question
    step = load(tmp_path / "traj").steps[0]
    assert step.gate.decision == "denied" and step.gate.rule == "tap_text"
    assert step.action == {"kind": "type", "text": "<secret:CVV>"}


def test_an_env_message_that_quotes_a_value_cut_short_keeps_no_part_of_it(tmp_path):
    """A browser's result quotes a dialog's text cut to its first 200 characters, which may end
    inside a value the model typed: masking finds no whole value there, yet no piece of it is
    kept, in the trajectory or in the next prompt."""
    iban = "DE89370400440532013000"

    class AskingPage(FakePhone):
        def _execute(self, action):
            return f'clicked; the page asked "Send 5.00 EUR to {iban[:10]}" (confirm), answered' \
                   " Cancel"

    policy = ListPolicy(['*FUNCTION*: Tap *ARGS*: {"point": (500,500)}', DONE])
    Agent(AskingPage(), policy, get_dialect("qwen2vl", "phone"), recorder=Recorder(
        tmp_path / "traj"), secrets=Secrets({"IBAN": iban})).run("Send 5 EUR to <secret:IBAN>")
    step = load(tmp_path / "traj").steps[0]
    assert step.result.message.startswith('clicked; the page asked "Send 5.00 EUR to ')
    steps = (tmp_path / "traj" / "steps.jsonl").read_text(encoding="utf-8")
    prompt = json.dumps([m.text() for m in policy.requests[1].prompt.messages])
    for piece in {iban[i:i + 6] for i in range(len(iban) - 5)}:
        assert piece not in steps and piece not in prompt, piece


def test_a_reply_that_holds_a_value_is_masked_untrained_and_replayed_as_written(
        tmp_path, hf_tokenizer):
    """A tap at x=500 with a PIN of 500: the record cannot keep the model's text, so it says
    so; the export trains the other replies only, and a replay given the secret taps the same
    point again."""
    from agent.policies.replay import ReplayPolicy
    from tests.test_export import read, train_qwen2vl
    from trajectories.export import export

    tap = '*FUNCTION*: Tap *ARGS*: {"point": (500,125)}'
    type_pin = '*FUNCTION*: Type *ARGS*: {"text": "<secret:PIN>"}'
    goal = "Tap the box and enter <secret:PIN>"
    first = FakePhone()
    Agent(first, ListPolicy([tap, type_pin, DONE]), get_dialect("qwen2vl", "phone"),
          recorder=Recorder(tmp_path / "run"), secrets=Secrets({"PIN": "500"})).run(goal)
    steps = load(tmp_path / "run").steps
    assert [s.response_masked for s in steps] == [True, False, False]
    assert "500" not in steps[0].response and steps[0].action["kind"] == "tap"

    out = tmp_path / "sft.jsonl"
    export([tmp_path / "run"], "qwen2vl", "episode", out)
    (row,) = read(out)
    _, _, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert trained == [type_pin, DONE]  # the tap's reply is context only

    again = FakePhone()
    result = Agent(again, ReplayPolicy(tmp_path / "run", {"PIN": "500"}),
                   get_dialect("qwen2vl", "phone"), recorder=Recorder(tmp_path / "replay"),
                   secrets=Secrets({"PIN": "500"})).run(goal)
    assert result.status == "success", result.reason
    assert again.executed == first.executed and again.typed == "500"
    assert [s.model_dump(include={"response", "action"}) for s in load(tmp_path / "replay").steps] \
        == [s.model_dump(include={"response", "action"}) for s in steps]


@pytest.mark.parametrize("spelled, value", [
    (r"pa55\/w|rd", "pa55/w|rd"),  # JSON's optional escape of "/"
    (r"p\u0061ss\x2a", "pass*"),  # JSON's and Python's numbered escapes
    (r"\101\N{LATIN SMALL LETTER B}c", "Abc"),  # octal, and a character named
    (r"\ud83d\ude00ok", "\U0001F600ok"),  # a JSON surrogate pair is one character
    (r"say \"hi\"", 'say "hi"'),
])
def test_escaped_spellings_are_found_where_a_reader_would_read_the_value(spelled, value):
    from agent.secrets import escaped_spellings

    text = f'thought {spelled}; {{"text": "{spelled}"}}'
    assert escaped_spellings(text, value) == {spelled}
    # An escaped backslash is one character: "\\u0061" spells a backslash and "u0061".
    assert escaped_spellings(r"\\u0061", "a") == set()
    assert escaped_spellings("plain pass*", "pass*") == set()  # the value as it is: no spelling


def test_a_reply_that_spells_a_value_with_escapes_is_masked_everywhere_it_goes(tmp_path,
                                                                                hf_tokenizer):
    """A JSON writer may spell "/" as "\\/", and Python adjacent literals split a text: the
    parser reads the value out of either, so the record, the thought, the next prompts' history
    and the export must not hold the reply as written; a replay given the secret repeats it."""
    from agent.policies.replay import ReplayPolicy
    from tests.test_export import read, train_qwen2vl
    from trajectories.export import export

    value = "pa55/w|rd"
    escaped = ('I will type pa55\\/w|rd\n'
               '*FUNCTION*: Type *ARGS*: {"text": "pa55\\/w|rd"}\n')
    # Split, with the value also written plainly in the thought, and a line break after.
    split = 'Typing pa55/w|rd.\n*FUNCTION*: Type *ARGS*: {"text": "pa55" "/w|rd"}\n'
    goal = "Type <secret:TOK>"
    env = FakePhone()
    Agent(env, ListPolicy([escaped, split, split, DONE]), get_dialect("qwen2vl", env.form_factor),
          recorder=Recorder(tmp_path / "run"), secrets=Secrets({"TOK": value})).run(goal)
    assert env.typed == value * 3
    steps = load(tmp_path / "run").steps
    assert [s.response_masked for s in steps] == [True, True, True, False]
    assert steps[0].thought == "I will type <secret:TOK>"
    assert steps[0].response == ('I will type <secret:TOK>\n'
                                 '*FUNCTION*: Type *ARGS*: {"text": "<secret:TOK>"}\n')
    # The split reply is recorded (and shown to later prompts) as its action alone.
    assert steps[1].response == '*FUNCTION*: Type *ARGS*: {"text": "<secret:TOK>"}'
    recorded = (tmp_path / "run" / "steps.jsonl").read_text(encoding="utf-8")
    assert "pa55" not in recorded and "w|rd" not in recorded
    out = tmp_path / "sft.jsonl"
    export([tmp_path / "run"], "qwen2vl", "episode", out)
    (row,) = read(out)
    _, _, trained, _ = train_qwen2vl(row, hf_tokenizer)
    assert trained == [DONE]
    assert "pa55" not in out.read_text(encoding="utf-8")

    again = FakePhone()
    result = Agent(again, ReplayPolicy(tmp_path / "run", {"TOK": value}),
                   get_dialect("qwen2vl", "phone"), secrets=Secrets({"TOK": value})).run(goal)
    assert result.status == "success" and again.typed == value * 3


@pytest.mark.parametrize("value, url", [
    # A GET form's query as a browser writes it (WHATWG urlencoded: only *-._ stay as they are).
    ("p@ss w0rd!~*", "file:///form.html?pw=p%40ss+w0rd%21%7E*"),
    # encodeURIComponent, as a page's script may put it in its URL.
    ("p@ss w0rd!~*", "https://x.test/#pw=p%40ss%20w0rd!~*"),
    ("Gr\u00fc\u00dfe/1", "https://x.test/?pw=Gr%C3%BC%C3%9Fe%2F1&next=2"),
    # encodeURI, which keeps "/" and encodes "|".
    ("pa55/w|rd", "file:///c.html?q=pa55/w%7Crd"),
    # A form on a page with no charset: windows-1252 bytes, "&#N;" for what it has no byte for.
    ("s3cr3t pass&word/\u00e9\u0394", "file:///f.html?tok=s3cr3t+pass%26word%2F%E9%26%23916%3B"),
])
def test_scrub_finds_a_value_percent_encoded_in_a_url(value, url):
    scrubbed = Secrets({"PW": value}).scrub({"url": url})["url"]
    assert "<secret:PW>" in scrubbed and "%40" not in scrubbed and "%C3" not in scrubbed


URL_PAGE = """<title>search</title><input id="q" autofocus><script>
document.getElementById('q').addEventListener('input', (e) => history.replaceState(
  null, '', '?q=' + e.target.value + '&in=query'));
document.getElementById('q').addEventListener('change', (e) => history.replaceState(
  null, '', '#q=' + e.target.value));
</script>"""


def test_a_value_a_page_puts_in_its_url_is_recorded_as_its_placeholder(tmp_path):
    """A page's script may copy a field into its URL (a search box's ?q=, a #fragment): chromium
    percent-encodes it there as the URL parser does, which no form encoding matches."""
    from urllib.parse import unquote

    from envs.browser import BrowserEnv
    from tests.conftest import require_tool

    require_tool("chromium")
    (tmp_path / "search.html").write_text(URL_PAGE, encoding="utf-8")
    values = ["open sesame@42", "a\"b<c>`d{e}^f|g'h?j&k=l", "Gr\u00fc\u00dfe/1 x", "p@ss w0rd!~*"]
    with BrowserEnv(viewport=(400, 300), start_url=(tmp_path / "search.html").as_uri()) as env:
        for number, value in enumerate(values):
            traj = tmp_path / f"traj{number}"
            policy = ListPolicy(['*FUNCTION*: Type *ARGS*: {"text": "<secret:PW>"}',
                                 '*FUNCTION*: Key *ARGS*: {"key": "Tab"}', DONE])
            agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                          recorder=Recorder(traj), secrets=Secrets({"PW": value}))
            assert agent.run("search for <secret:PW>").status == "success"
            recorded = [s.extras.get("url", "") for s in load(traj).steps]
            assert any("?q=<secret:PW>&in=query" in url for url in recorded), (value, recorded)
            assert any(url.endswith("#q=<secret:PW>") for url in recorded), (value, recorded)
            for path in traj.rglob("*"):
                if path.is_file() and path.suffix != ".png":
                    assert value not in unquote(path.read_text(encoding="utf-8")), (value, path)


def test_a_parse_error_that_cuts_a_value_short_keeps_no_part_of_it(tmp_path):
    """A parse error quotes the reply cut short; a value cut with it is no longer the value,
    so the error is built from the reply with its values hidden."""
    value = "Tr0ub4dor&3-correct-horse-battery"
    bad = f"*FUNCTION*: Type *ARGS*: the password on the screen is {value}"
    env = FakePhone()
    policy = ListPolicy([bad, DONE])
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"PW": value}))
    agent.run("Log in with <secret:PW>")
    [first, _] = load(tmp_path / "traj").steps
    assert first.parse_error and "<secret:PW" in first.parse_error
    for path in (tmp_path / "traj").rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert value[:6] not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("value", ["correct horse battery", "pa\\ss'wo\"rd",
                                   "Gr\u00fc\u00dfe \u65e5\u672c"])
def test_scrub_finds_the_value_in_the_forms_the_runtime_encodes_it(value):
    # A second line of defence: the envs' errors do not quote typed text at all.
    secrets = Secrets({"PW": value})
    spaced = value.replace(" ", "%s")
    for shown in (value, spaced, shlex.quote(value), shlex.quote(spaced), repr(value),
                  json.dumps(value), json.dumps(value, ensure_ascii=False)):
        scrubbed = secrets.scrub(f"`input text {shown}` failed")
        assert "<secret:PW>" in scrubbed and value not in scrubbed and spaced not in scrubbed
    # The base64 of a text holding the value, at each alignment, with text before and after.
    for before in ("", "a", "ab", "pin: "):
        for after in ("", "\n", "xy"):
            encoded = base64.b64encode((before + value + after).encode()).decode()
            scrubbed = secrets.scrub(f"am broadcast --es msg {encoded}")
            assert "<secret:PW>" in scrubbed
            assert base64.b64encode(value.encode()).decode()[2:-3] not in scrubbed
    # A short value is scrubbed as written only: its base64 is too short to tell apart.
    assert Secrets({"PIN": "12"}).scrub("MTIzNA== 12") == "MTIzNA== <secret:PIN>"


TYPE_PW = '*FUNCTION*: Type *ARGS*: {"text": "%s"}'


@pytest.mark.parametrize(("value", "typed", "adb_keyboard"), [
    ("correct horse battery", "<secret:PW>", True),  # `input text correct%shorse%sbattery`
    ("hunter2hunter2", "<secret:PW>\\n", True),  # base64 through ADBKeyboard
    ("pa\\ss'wo\"rd!", "<secret:PW>\\n", False),  # no ADBKeyboard: once repr() of the text
    ("hunter2hunter2", "x" * 34 + "<secret:PW>\\n", False),  # once its first 40 characters
])
def test_a_phone_that_fails_the_typing_shows_nobody_the_value(tmp_path, value, typed,
                                                                adb_keyboard):
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    gone = (lambda command: ConnectionResetError("device offline")
            if command.startswith(("input text", "am broadcast")) else None)
    env = fake_android_env(FakeAdbDevice(adb_keyboard=adb_keyboard, fail=gone))
    policy = ListPolicy([TYPE_PW % typed, DONE])
    Agent(env, policy, get_dialect("qwen2vl", env.form_factor), recorder=Recorder(
        tmp_path / "traj"), secrets=Secrets({"PW": value})).run("Log in with <secret:PW>")
    step = load(tmp_path / "traj").steps[0]
    assert not step.result.ok and "characters" in step.result.message
    steps = (tmp_path / "traj" / "steps.jsonl").read_text(encoding="utf-8")
    prompt = json.dumps([m.text() for m in policy.requests[1].prompt.messages])
    # No piece of 6 characters of the value, as written, escaped, with spaces as "%s", or of the
    # base64 of the typed text.
    revealed = typed.replace("<secret:PW>", value).replace("\\n", "\n").encode()
    forms = (value, json.dumps(value)[1:-1], repr(value)[1:-1], value.replace(" ", "%s"),
             base64.b64encode(revealed).decode())
    for piece in {form[i:i + 6] for form in forms for i in range(len(form) - 5)}:
        assert piece not in steps and piece not in prompt, piece


def _replies(phone_env, task) -> list[dict]:
    """The Notes task's solution, replayed as UI-TARS text, typing a placeholder."""
    dialect = get_dialect("uitars", phone_env.form_factor)
    phone_env.reset(task.initialize)
    screen = Screen(*phone_env.observe().size)
    replies = []
    for step in task.solution(phone_env):
        action = Type(text="<secret:NOTE>") if step.action.kind == "type" else step.action
        assert phone_env.execute(step.action).ok  # walk the real layout to the next screen
        replies.append({"response": dialect.render_action(action, screen, step.thought)})
    return replies


def test_a_cli_run_types_the_secret_on_the_virtual_phone_and_nothing_shows_it(
    virtual_phone, tmp_path
):
    from envs.android import AndroidEnv
    from tasks.registry import get_task

    phone, adb = virtual_phone
    # The note task's own text is the secret, so its solution's layout walk types it.
    task = get_task("phone/write-note", seed=5)
    value = task.params["text"]
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        replies = _replies(env, task)
        task.initialize(env)  # walking the solution typed the value; the run must type it again
        assert not task.check(env, None).success
    replay = tmp_path / "replies.jsonl"
    replay.write_text("".join(json.dumps(r) + "\n" for r in replies))
    run_env = {**os.environ, "COLUMNS": "160", "NOTE": value}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "agent_cli.py"), *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=240, env=run_env)

    # No --task: a task's own goal would spell the value out. The device's state is read instead.
    done = cli("run", "Write a note that says <secret:NOTE> and save it.", "--env", "android",
               "--device", phone.serial, "--adb-port", str(adb.port), "--model",
               f"replay:{replay}", "--dialect", "uitars", "--secret", "NOTE", "--out", "runs")
    assert done.returncode == 0, done.stdout + done.stderr
    (directory,) = (tmp_path / "runs").iterdir()
    traj = load(directory)
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        check = task.check(env, None)
    assert check.success, check.reason  # the device got the value itself
    typed = [s for s in traj.steps if s.action and s.action["kind"] == "type"]
    assert [s.action["text"] for s in typed] == ["<secret:NOTE>"]
    exported = [cli("export", str(directory), "--format", fmt, "--out", f"sft-{fmt}.json")
                for fmt in ("qwen2vl", "llamafactory")]
    assert all(e.returncode == 0 for e in exported), [e.stderr for e in exported]
    shown = [done.stdout, done.stderr, *(e.stdout + e.stderr for e in exported)]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png"
             and p != replay]
    assert {p.name for p in files} >= {"steps.jsonl", "meta.json", "view.html",
                                       "sft-qwen2vl.json", "sft-llamafactory.json"}
    for text in shown + [p.read_text(encoding="utf-8") for p in files]:
        assert value not in text
    assert "<secret:NOTE>" in done.stdout  # the console shows the placeholder instead

    # A replay types the value again, given the secret again (the trajectory holds no value).
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        task.initialize(env)
    again = cli("replay", str(directory), "--device", phone.serial, "--adb-port", str(adb.port),
                "--secret", "NOTE", "--out", "again")
    assert again.returncode == 0, again.stdout + again.stderr
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        assert task.check(env, None).success
    assert value not in again.stdout + again.stderr


def _texts(folder: Path) -> dict[Path, str]:
    """Every file under ``folder`` but the screenshots (pixels, see docs/safety.md)."""
    return {p: p.read_text(encoding="utf-8") for p in folder.rglob("*")
            if p.is_file() and p.suffix != ".png"}


def test_a_bench_types_the_secret_and_no_report_or_trajectory_shows_it(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.LOCKED)
    out = tmp_path / "bench"
    # Two worker processes: the secret travels with the runner, the value from the environment.
    done = CliRunner().invoke(app, ["bench", "--suite", "secret", "--episodes", "2", "--workers",
                                    "2", "--secret", "PIN", "--out", str(out)],
                              env={"COLUMNS": "160", "PIN": VALUE})
    assert done.exit_code == 1, done.output  # the refused PINs are runtime errors
    assert done.stderr.startswith("error: 2 of 4 episodes ended in a runtime error")
    results = {r.key: r for r in read_results(out)}
    assert sorted(results) == ["secret/refused@0", "secret/refused@1", "secret/type-pin@0",
                               "secret/type-pin@1"]
    for seed in (0, 1):
        unlocked = results[f"secret/type-pin@{seed}"]
        # Each phone's PIN is the value: only typing the value itself unlocks it.
        assert unlocked.outcome == "success", unlocked
        assert unlocked.goal == "Unlock the phone with <secret:PIN>"
        assert unlocked.score.reason == "typed '<secret:PIN>'"
        refused = results[f"secret/refused@{seed}"]
        assert refused.outcome == "error"
        assert refused.error == "EnvError: the device refused the PIN <secret:PIN>"
    texts = _texts(out)
    assert {p.name for p in texts} >= {"results.jsonl", "summary.json", "report.md",
                                       "report.html", "bench.json", "steps.jsonl", "meta.json",
                                       "view.html"}
    assert sum(p.name == "steps.jsonl" for p in texts) == 2
    for path, text in texts.items():
        assert VALUE not in text, path
    assert VALUE not in done.output and "<secret:PIN>" in done.output  # the refusals, printed


def test_ray_tasks_carry_the_secret_and_store_only_its_placeholder(tmp_path):
    import dataclasses

    import ray  # a test dependency (the [ray] extra): missing, the install is broken
    runner = dataclasses.replace(bench_fakes.LOCKED, secrets={"PIN": VALUE})
    # "local": a new instance, not a cluster that `ray start` left on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = run_bench(BenchSettings(suite="secret", tasks="secret/type-pin", episodes=2,
                                      model="scripted"), tmp_path, runner=runner, executor="ray")
    finally:
        ray.shutdown()
    # Each task ran in a ray worker, which got the value: only the value unlocks its phone.
    assert [r.outcome for r in run.results] == ["success", "success"], run.results
    assert all(r.score.reason == "typed '<secret:PIN>'" for r in run.results)
    for path, text in _texts(tmp_path).items():
        assert VALUE not in text, path


def test_a_secret_that_is_also_a_seed_leaves_the_episodes_names_alone(tmp_path):
    """A PIN "1" was masked inside the key "secret/type-pin@1", and the line it broke ended the
    bench with a traceback (each resume too)."""
    import dataclasses

    runner = dataclasses.replace(bench_fakes.LOCKED, secrets={"PIN": "1"})
    run = run_bench(BenchSettings(suite="secret", tasks="secret/type-pin", episodes=2,
                                  model="scripted"), tmp_path, runner=runner)
    assert [(r.key, r.seed, r.outcome) for r in run.results] == [
        ("secret/type-pin@0", 0, "success"), ("secret/type-pin@1", 1, "success")]
    assert run.results[1].trajectory.endswith("-s1")
    assert all(r.score.reason == "typed '<secret:PIN>'" for r in run.results)


def test_a_bench_without_the_secret_fails_its_episodes_with_a_reason(tmp_path):
    run = run_bench(BenchSettings(suite="secret", tasks="secret/type-pin", model="scripted"),
                    tmp_path, runner=bench_fakes.LOCKED)
    (result,) = run.results
    assert result.outcome == "error" and "--secret PIN" in result.error


class PlaceholderEngine(EchoEngine):
    """``serve``'s engine: types the goal's secret by its placeholder, then ends the episode."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    # Streams nothing: serve sends all at the end.
    def generate_batch(self, batch, on_text=None, gone=None):
        self.calls += 1
        return [Completion(TYPE_SECRET if self.calls == 1 else DONE, job.prompt_tokens, 3)
                for job in batch]


class RecordingApp:
    """An ASGI app in front of another, keeping each request body the server receives."""

    def __init__(self, app) -> None:
        self.app = app
        self.bodies: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []

        async def receiving():
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                self.bodies.append(b"".join(chunks).decode("utf-8"))
            return message

        await self.app(scope, receiving, send)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def log_lines() -> Iterator[list[str]]:
    """Every log line of this process at DEBUG: uvicorn's access and error logs (which do not
    propagate; entered once the server started, since uvicorn sets their handlers then) and any
    other logger's."""
    lines = Lines()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(lines)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        yield lines.lines
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(lines)
            lg.setLevel(level)


def test_an_episode_through_our_own_serve_shows_the_server_only_the_placeholder(
    tmp_path, capfd
):
    from agent.backends.openai import OpenAIBackend
    from agent.policies.backend import BackendPolicy
    from runtime.server.app import ServerSettings, create_app, running_server

    app = RecordingApp(create_app(PlaceholderEngine(), ServerSettings(model_id="m")))
    env = EchoingPhone()
    # serve's own log level: a line per request.
    with running_server(app, log_level="info") as url, log_lines() as server_log:
        policy = BackendPolicy(OpenAIBackend(url, "m", retries=0))
        agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor),
                      recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"PIN": VALUE}))
        try:
            result = agent.run("Unlock with <secret:PIN>")
        finally:
            policy.close()
    assert result.status == "success", result.reason
    assert env.typed == f"pin: {VALUE}"  # the env got the value
    assert len(app.bodies) == 2
    prompts = [json.dumps([part.get("text", "") for m in json.loads(body)["messages"]
                           for part in ([{"text": m["content"]}] if isinstance(m["content"], str)
                                        else m["content"])]) for body in app.bodies]
    assert all("Unlock with <secret:PIN>" in p for p in prompts)
    # The env's error quoted the typed value; the model read it back with the placeholder.
    assert "pin: <secret:PIN>" in prompts[1] and "failed" in prompts[1]
    access = [line for line in server_log if "POST /v1/chat/completions" in line]
    assert len(access) == 2, server_log  # the server's log was captured
    printed = capfd.readouterr()
    for text in [*app.bodies, *server_log, printed.out, printed.err]:
        assert VALUE not in text
