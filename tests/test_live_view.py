"""The run's step view: plain lines outside a terminal, and a final table with every step."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cli.live_view import MAX_ROWS, LiveView
from core.results import ActionResult
from trajectories.records import RecordedPrompt, StepRecord


def records(n: int) -> list[StepRecord]:
    return [StepRecord(step=i, image=f"images/step_{i:03d}.png", screen=(1080, 2400),
                       prompt=RecordedPrompt(messages=[]), response="r", thought=f"thought {i}",
                       action={"kind": "tap", "x": 10 * i, "y": 20},
                       result=ActionResult(ok=True, message=f"tapped {i}"))
            for i in range(n)]


def test_outside_a_terminal_each_step_is_one_plain_line():
    out = io.StringIO()
    console = Console(file=out, width=100)  # not a terminal, as under CI, nohup or tee
    with LiveView(console, "goal") as view:
        for record in records(3):
            view.step(record)
            assert out.getvalue().count("\n") == record.step + 1  # printed as it ended
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    assert lines[2].startswith("step 2: tap(x=20, y=20) -> tapped 2 | thought 2")


def test_the_final_table_keeps_every_row():
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    steps = records(MAX_ROWS + 5)
    with LiveView(console, "goal") as view:
        for record in steps:
            view.step(record)
    final = out.getvalue().rsplit("goal", 1)[1]  # the table printed at the end
    assert final.count("tap(x=") == len(steps)
    assert "thought 0 " in final and f"thought {len(steps) - 1} " in final


def test_text_with_square_brackets_is_shown_as_written():
    """A goal or a thought may hold "[/ul]" or "[bold]": shown as written, never read as markup
    (rich fails on a closing tag that opens nothing, after the episode has run)."""
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    step = records(1)[0].model_copy(update={"thought": "close the list [/ul] now [bold]x"})
    with LiveView(console, "find [/] the [b]thing") as view:
        view.step(step)
    shown = out.getvalue()
    assert "close the list [/ul] now [bold]x" in shown and "find [/] the [b]thing" in shown


def test_the_run_report_shows_reasons_as_written(tmp_path):
    from agent.loop import EpisodeResult
    from cli.run_cmd import report
    from core.results import Score
    from runtime.episode import RunOutcome

    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    result = EpisodeResult(status="answered", reason="answered: it is [/] done", steps=1,
                           check=Score(success=True, reason="holds '#todo: fix [bug] {soon}'"))
    report(RunOutcome(result, tmp_path, tmp_path / "view.html"), console)
    shown = out.getvalue()
    assert "answered: it is [/] done" in shown and "'#todo: fix [bug] {soon}'" in shown


#: Retitles the terminal, clears it, writes in red and sets the clipboard (OSC 52), then a
#: one-byte CSI (C1) that moves the cursor, and a right-to-left override and isolate that would
#: show the rest of the line reversed ("Trojan Source").
HOSTILE = ("\x1b]0;owned\x07\x1b[2J\x1b[31mall passed\x1b]52;c;ZWNobw==\x1b\\\x9b5A"
           "\u202edenied\u2067")


def _hostile_sequences(shown: str) -> list[str]:
    return [s for s in ("\x1b]0;", "\x1b[2J", "\x1b[31m", "\x1b]52;", "\x9b", "\u202e",
                        "\u2067") if s in shown]


@pytest.mark.parametrize("terminal", [False, True])
def test_terminal_sequences_in_what_the_run_shows_are_shown_not_obeyed(tmp_path, terminal):
    """The model's thought and action, the env's result, the goal, the gate's question and the
    end's reasons are written by a model or a screen: their control characters are shown as
    escapes, never sent to the terminal."""
    from agent.loop import EpisodeResult
    from cli.error_line import error_line
    from cli.run_cmd import report
    from core.results import Score
    from runtime.episode import RunOutcome

    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=terminal, color_system=None)
    step = records(1)[0].model_copy(update={
        "thought": "look " + HOSTILE, "action": {"kind": "type", "text": HOSTILE},
        "result": ActionResult(ok=True, message="typed " + HOSTILE)})
    with LiveView(console, "goal " + HOSTILE, live=terminal) as view:
        view.goal("new goal " + HOSTILE)
        view.step(step)
    result = EpisodeResult(status="failure", reason="gave up " + HOSTILE, steps=1,
                           check=Score(success=False, reason="held " + HOSTILE))
    report(RunOutcome(result, tmp_path, tmp_path / "view.html"), console)
    console.print(error_line("bad goal " + HOSTILE))
    shown = out.getvalue()
    assert _hostile_sequences(shown) == []
    assert "\\x1b]0;owned\\x07" in shown and "\\x9b5A" in shown  # shown, as escapes
    assert "\\u202edenied\\u2067" in shown
    assert "gave up \\x1b]0;owned" in shown and "held \\x1b]0;owned" in shown


def test_the_gates_question_shows_terminal_sequences_as_escapes(monkeypatch):
    import sys

    from runtime.episode import ask_in_terminal

    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=True, color_system=None)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda *a: "n")
    assert ask_in_terminal(console)("Type " + HOSTILE + "?") is False
    assert "Type \\x1b]0;owned" in out.getvalue()  # the question was asked, with escapes
    assert _hostile_sequences(out.getvalue()) == []


def test_paths_are_printed_as_they_are_though_a_secret_hides_elsewhere(tmp_path):
    from cli.scrubbed import print_path, scrubbed_console

    folder = tmp_path / "20261204-160455-type-the-code"
    console = scrubbed_console({"CODE": "261204"})
    out = io.StringIO()
    console.file._stream = out
    console.print("the code is 261204")
    print_path(console, "trajectory", folder)
    assert out.getvalue().splitlines() == ["the code is <secret:CODE>", f"trajectory: {folder}"]


TAP_QUOTING = 'The code {pin} is on the screen.\n*FUNCTION*: Tap *ARGS*: {{"point": (500,500)}}'


@pytest.mark.parametrize("pin", ["2400", "12", "0"])
@pytest.mark.parametrize("terminal", [False, True], ids=["plain lines", "final table"])
def test_a_short_secret_is_masked_where_the_model_wrote_it_and_nowhere_else(tmp_path, pin,
                                                                           terminal):
    """A mask inside a number the runtime printed (a 1080x2400 screen, step 12, 0 ms) would show
    where the value is, and so what it is: only what the model, a screen or an env wrote is
    masked, however short the value."""
    from actions.dialects import get_dialect
    from agent.loop import Agent
    from agent.secrets import Secrets
    from cli.run_cmd import report
    from cli.scrubbed import ScrubbedStream
    from runtime.episode import RunOutcome
    from tests.agent_fakes import FakePhone, ListPolicy

    out = io.StringIO()
    console = Console(file=ScrubbedStream(out, Secrets({"PIN": pin})), width=200,
                      force_terminal=terminal, color_system=None)
    env = FakePhone()
    done = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'
    policy = ListPolicy([TAP_QUOTING.format(pin=pin)] * 13 + [done])
    with LiveView(console, "unlock with <secret:PIN>", live=terminal) as view:
        result = Agent(env, policy, get_dialect("qwen2vl", env.form_factor), observer=view,
                       secrets=Secrets({"PIN": pin})).run("unlock with <secret:PIN>")
    report(RunOutcome(result, tmp_path, tmp_path / "view.html"), console)
    shown = out.getvalue()
    # What stays on the screen: the plain lines, or the table printed when the live view ends.
    final = shown.rsplit("unlock with <secret:PIN>", 1)[1] if terminal else shown
    assert result.status == "success" and final.count("The code <secret:PIN> is on") == 13
    assert f"The code {pin} is" not in shown
    assert "<secret:PIN>" not in shown.replace("The code <secret:PIN> is on", "").replace(
        "unlock with <secret:PIN>", "")
    assert "after 14 step(s)" in final
    if terminal:  # each row's step number and screen
        rows = [line.split("│")[1:3] for line in final.splitlines() if "tap(" in line]
        assert [[n.strip(), size.strip()] for n, size in rows] == [
            [str(i), "1080x2400"] for i in range(13)]
    else:
        steps = [line.split(":")[0] for line in shown.splitlines() if line.startswith("step ")]
        assert steps == [f"step {i}" for i in range(14)]


def test_an_error_line_masks_a_value_however_short(capsys):
    """The closing error may quote anything an env or an endpoint said: the console's own
    masking leaves short values alone, so the line is scrubbed whole first."""
    from cli.scrubbed import print_error

    print_error({"PIN": "12"}, "the device said: input text 12 [failed]")
    assert capsys.readouterr().err.strip() == (
        "error: the device said: input text <secret:PIN> [failed]")
