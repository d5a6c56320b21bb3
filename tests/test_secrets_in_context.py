"""A secret's value where the text around it changed how it reads: quoted inside a longer text
(``repr`` escapes a ``'`` only where the text also holds a ``"``; a shell-quoted argument writes
each ``'`` as ``'"'"'``, with no quotes around the value itself), with its white space collapsed
(an endpoint's error as the backend shows it) or cut short, respelled as a browser reads a url,
or given to ``--secret`` with a wrong separator
(``PIN:1234``, which a usage error must not echo)."""

from __future__ import annotations

import json
import shlex

import httpx
import pytest
from typer.testing import CliRunner

from actions.dialects import get_dialect
from agent.backends.openai import ERROR_CHARS, OpenAIBackend
from agent.loop import Agent
from agent.policies.backend import BackendPolicy
from agent.safety import ConfirmationGate, GateRules
from agent.secrets import SecretError, Secrets
from cli.app import app
from core.actions import Navigate, Type
from tests.agent_fakes import FakePhone, PasswordPhone
from trajectories.recorder import Recorder

VALUE = "o'brien42"


def test_the_gate_question_hides_a_value_with_a_quote_inside_a_quoted_text():
    # The model read the password off a screen and typed it in double quotes: the action's
    # repr escapes the value's ' (a text with both quotes is written in single quotes).
    secrets = Secrets({"PW": VALUE})
    asked: list[str] = []
    gate = ConfirmationGate(GateRules(), PasswordPhone(), "ask",
                            ask=lambda q: asked.append(q) or False, hide=secrets.scrub)
    assert not gate.review(Type(text=f'Login: "{VALUE}"'), None).allowed
    [question] = asked
    assert "brien42" not in question and "<secret:PW>" in question, question


@pytest.mark.parametrize("typed", [f"{VALUE} please", f"my pin: {VALUE}", f"x{VALUE}'y"])
def test_scrub_finds_a_value_inside_a_shell_quoted_argument(typed):
    # Android's `input text` argument: the whole typed text quoted, spaces as %s.
    command = "input text " + shlex.quote(typed.replace(" ", "%s"))
    scrubbed = Secrets({"PW": VALUE}).scrub(f"`{command}` failed")
    assert "brien42" not in scrubbed and "<secret:PW>" in scrubbed, scrubbed


@pytest.mark.parametrize("command", [["run", "type <secret:PIN>", "--model", "scripted"],
                                     ["bench", "--model", "scripted"]])
@pytest.mark.parametrize("option", ["PIN:4321", "PIN 4321", "PIN-4321"])
def test_a_malformed_secret_option_is_refused_without_echoing_it(tmp_path, command, option):
    # A value given with the wrong separator: the option is not a NAME, and its text is not
    # printed, since it may hold the value (a CI log keeps what the terminal showed).
    done = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "out"),
                                    "--secret", "OK=x", "--secret", option])
    assert done.exit_code == 2, done.output
    assert "--secret number 2" in done.output and "4321" not in done.output, done.output


def run_against_an_endpoint(tmp_path, code: str, error):
    """An episode on the openai backend whose model types ``code`` as written, read off the
    screen; the endpoint then refuses the next request with ``error(said)``, ``said`` being the
    text of the model's replies that the request holds. The result and meta.json's text."""
    typed = f'*FUNCTION*: Type *ARGS*: {{"text": "{code}"}}'

    def handler(request: httpx.Request) -> httpx.Response:
        messages = json.loads(request.content)["messages"]
        if len(messages) < 3:  # the first step
            return httpx.Response(200, json={"choices": [{"message": {"content": typed}}]})
        said = " ".join(part["text"] for message in messages if message["role"] == "assistant"
                        for part in message["content"] if part["type"] == "text")
        return httpx.Response(400, json={"error": {"message": error(said)}})

    backend = OpenAIBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler))
    env = FakePhone()
    agent = Agent(env, BackendPolicy(backend), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "traj"), secrets=Secrets({"CODE": code}))
    result = agent.run("Enter the recovery code")
    assert result.status == "error" and "refused the request" in result.reason
    return result, (tmp_path / "traj" / "meta.json").read_text(encoding="utf-8")


def test_an_endpoint_error_that_quotes_the_request_with_its_spacing_collapsed_hides_the_value(
        tmp_path):
    # A code whose groups are two spaces apart; the backend shows an endpoint's error with each
    # run of white space as one space.
    result, meta = run_against_an_endpoint(tmp_path, "alpha-bravo  charlie-delta",
                                           lambda said: f"cannot take {said}")
    for shown in (result.reason, meta):
        assert "bravo" not in shown and "charlie" not in shown, shown


def test_an_endpoint_error_that_cuts_a_value_short_shows_no_piece_of_it(tmp_path):
    # The backend shows the first ERROR_CHARS characters of an endpoint's error: padded here so
    # that they end in the middle of the value, where scrubbing no longer finds it whole.
    code = "alpha-bravo-charlie-delta-echo-foxtrot"
    result, meta = run_against_an_endpoint(
        tmp_path, code,
        lambda said: "x" * (ERROR_CHARS - len(code) // 2 - said.index(code)) + said)
    for shown in (result.reason, meta):
        assert not any(code[i:i + 6] in shown for i in range(len(code) - 5)), shown


@pytest.mark.parametrize("token", ["tok\\3n-9f8e7d6c5b4a", "tok\t3n-9f8e7d6c5b4a"])
def test_the_gate_hides_a_value_in_a_url_that_the_browser_would_respell(token):
    # The url the gate judges is spelled as a browser reads it: a tab dropped, a backslash as a
    # slash. The question and the recorded reason show it with the value masked all the same.
    secrets = Secrets({"TOKEN": token})
    asked: list[str] = []
    gate = ConfirmationGate(GateRules(allowed_domains=["example.com"]), FakePhone(), "ask",
                            ask=lambda q: asked.append(q) or False, hide=secrets.scrub)
    verdict = gate.review(Navigate(url=f"https://collector.example.net/up?k={token}"), None)
    assert not verdict.allowed and verdict.rule == "navigation"
    for shown in (*asked, verdict.reason):
        assert "9f8e7d" not in shown and "collector.example.net" in shown, shown


def test_a_value_the_action_could_not_hold_fails_the_step_without_quoting_it():
    """A secret's value goes into the typed text after the action was checked: a value the
    check would refuse (over the 2,000 characters a model's own text may have) reached the
    env."""
    value = "x" * 2001
    secrets = Secrets({"PW": value})
    with pytest.raises(SecretError, match="at most 2000 characters") as error:
        secrets.reveal(Type(text="pin: <secret:PW>"))
    assert value[:6] not in str(error.value)
    assert secrets.reveal(Type(text="no secret here")) == Type(text="no secret here")


def test_a_value_that_is_not_utf8_is_refused_before_the_run():
    """An environment variable whose bytes are not UTF-8 reads as lone surrogates: a traceback
    when the run started (and a crash in android's encoding had it got further)."""
    with pytest.raises(SecretError, match="PW is not UTF-8") as error:
        Secrets({"PW": "caf\udce9-pin"})
    assert "caf" not in str(error.value)


def test_a_secret_variable_that_is_not_utf8_is_one_line_on_the_command_line():
    result = CliRunner().invoke(app, ["run", "log in with <secret:PW>", "--model", "scripted",
                                      "--secret", "PW"], env={"PW": "caf\udce9-pin"})
    assert result.exit_code == 2 and "PW is not UTF-8" in result.output
    assert "Traceback" not in result.output and "caf" not in result.output
