"""`model generate` prints the model's text safe for the terminal: a reply holding escape
sequences (a title change, a screen clear, an OSC 52 clipboard write) shows them as escapes
instead of the terminal obeying them; ordinary text, line breaks included, is as written."""

from __future__ import annotations

from typer.testing import CliRunner

from agent_cli import app

HOSTILE = "line one\n\x1b]52;c;aGVsbG8=\x07\x1b]0;pwned\x07 \x9b2J\x1b[2J done\tend"


def test_generate_shows_escape_sequences_in_the_reply_as_escapes(tiny_checkpoint, monkeypatch):
    import model.generate

    # The model's reply, as a real checkpoint's byte-level vocabulary can spell it.
    monkeypatch.setattr(model.generate, "generate", lambda *a, **k: [
        model.generate.Generation(tokens=[1, 2], text=HOSTILE, finish_reason="length")])
    result = CliRunner().invoke(app, ["model", "generate", str(tiny_checkpoint), "-p", "hi",
                                      "--max-new-tokens", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert not any(c in shown for c in "\x1b\x07\x9b"), repr(shown)
    assert "\\x1b]0;pwned\\x07" in shown and "\\x9b2J" in shown
    assert shown.startswith("line one\n") and "done\tend" in shown
