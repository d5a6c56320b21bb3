"""The gate's question at the terminal never shows a secret's value, even where the model wrote
the value itself (read off a screen): the console's own masking cannot be relied on there, since
rich wraps a long question onto several lines and a value cut in two is no longer found."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from agent.safety import ConfirmationGate, GateRules
from agent.secrets import Secrets
from cli.scrubbed import ScrubbedStream
from core.actions import Navigate, Type
from core.text import pieces
from runtime.episode import ask_in_terminal
from tests.agent_fakes import PasswordPhone

PASSPHRASE = "correct horse battery staple"
TOKEN = "tok3n-9f8e7d6c5b4a39281706f5e4d3c2b1a0-zz"


ACTIONS = [
    Type(text=PASSPHRASE),  # typed into a password field
    Navigate(url=f"https://collector.example.net/upload?token={TOKEN}&more=1"),  # off the list
]


@pytest.mark.parametrize("action", ACTIONS, ids=["type", "navigate"])
def test_the_question_never_holds_a_value_the_model_wrote(action):
    secrets = Secrets({"PASS": PASSPHRASE, "TOKEN": TOKEN})
    asked: list[str] = []
    gate = ConfirmationGate(GateRules(allowed_domains=["example.com"]), PasswordPhone(), "ask",
                            ask=lambda q: asked.append(q) or False, hide=secrets.scrub)
    verdict = gate.review(action, None)
    assert not verdict.allowed and verdict.by == "user"
    [question] = asked
    for value in (PASSPHRASE, TOKEN):
        assert not any(piece in question for piece in pieces([value])), question


@pytest.mark.parametrize("width", range(24, 100, 3))
@pytest.mark.parametrize("action", ACTIONS, ids=["type", "navigate"])
def test_a_narrow_terminal_shows_no_piece_of_a_value_in_the_question(monkeypatch, width,
                                                                     action):
    secrets = Secrets({"PASS": PASSPHRASE, "TOKEN": TOKEN})
    shown = io.StringIO()
    console = Console(file=ScrubbedStream(shown, secrets), width=width, force_terminal=True,
                      color_system=None)
    stdin = io.StringIO("n\n")
    stdin.isatty = lambda: True
    monkeypatch.setattr(sys, "stdin", stdin)
    gate = ConfirmationGate(GateRules(allowed_domains=["example.com"]), PasswordPhone(), "ask",
                            ask=ask_in_terminal(console), hide=secrets.scrub)
    verdict = gate.review(action, None)
    assert not verdict.allowed and verdict.by == "user"  # the "n" was read: it asked
    text = shown.getvalue()
    assert "Allow it?" in " ".join(text.split())
    flat = text.replace("\n", "")  # a value wrapped onto two lines, read back as one
    for value in (PASSPHRASE, TOKEN):
        assert not any(piece in text or piece.replace(" ", "") in flat.replace(" ", "")
                       for piece in pieces([value])), text
