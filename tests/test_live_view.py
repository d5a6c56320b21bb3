"""The run's step view: plain lines outside a terminal, and a final table with every step."""

from __future__ import annotations

import io

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
