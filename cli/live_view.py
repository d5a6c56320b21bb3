"""The live step view in the terminal: one row per step, and what the agent is doing right now."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.terminal import printable
from trajectories.records import StepRecord

_PHASES = {
    "reset": "setting up the start state", "observe": "observing the screen",
    "model": "waiting for the model", "act": "acting on the device",
}
MAX_ROWS = 12  # the live table shows the most recent steps; the HTML view has them all


def describe_action(action: dict | None) -> str:
    if action is None:
        return "-"
    fields = ", ".join(
        f"{k}={v!r}" for k, v in action.items() if k != "kind" and v not in ("", None)
    )
    return f"{action['kind']}({fields})"


def clip(text: str, limit: int = 70) -> str:
    """One line of at most ``limit`` characters, its control characters shown as escapes."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LiveView:
    """A StepObserver that draws a live rich table of the latest steps, and when the episode
    ends prints the table of every step.

    With ``live=False``, or outside a terminal (CI, nohup, ``| tee``), it prints one plain line
    per step as the step ends instead (the human policy reads the same terminal)."""

    def __init__(self, console: Console, title: str, live: bool = True) -> None:
        self.console = console
        self.title = title
        self.rows: list[StepRecord] = []
        self.status = Text("starting…", style="dim")
        live = live and console.is_terminal
        # Transient: the live region (the latest rows) gives way to the full table at the end.
        self._live = Live(self._render(), console=console, refresh_per_second=8,
                          transient=True) if live else None

    def __enter__(self) -> "LiveView":
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self.console.print(self._table(self.rows, self.title))

    # StepObserver
    def phase(self, step: int, name: str) -> None:
        self.status = Text(f"step {step}: {_PHASES.get(name, name)}…", style="cyan")
        self._refresh()

    def step(self, record: StepRecord) -> None:
        self.rows.append(record)
        if self._live is None:
            self.console.print(plain_line(record), markup=False, highlight=False,
                               soft_wrap=True)
        self._refresh()

    def goal(self, goal: str) -> None:
        self.title = goal
        if self._live is None:
            self.console.print(f"goal: {printable(goal)}", markup=False, highlight=False,
                               soft_wrap=True)
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        table = self._table(self.rows[-MAX_ROWS:], self.title)
        hidden = len(self.rows) - MAX_ROWS
        if hidden > 0:
            table.caption = f"{hidden} earlier step(s) not shown here; all are in the final table"
        return Group(table, self.status)

    def _table(self, rows: list[StepRecord], title: str | None) -> Table:
        # The goal and the model's text are shown as written: rich would read "[/x]" in them
        # as markup (and fail on it), so each is a Text, never a markup string.
        table = Table(title=Text(printable(title)) if title is not None else None,
                      title_justify="left",
                      expand=True, show_lines=False)
        table.add_column("#", justify="right", style="bold")
        table.add_column("screen", no_wrap=True)
        table.add_column("thought", ratio=3, overflow="fold")
        table.add_column("action", ratio=3, overflow="fold")
        table.add_column("result", ratio=2, overflow="fold")
        table.add_column("tokens", justify="right")
        # A short header keeps the text columns readable in an 80-column terminal.
        table.add_column("ms o/m/p/a", justify="right", no_wrap=True)
        for r in rows:
            result = Text(clip(outcome(r)), style="red" if r.parse_error or (
                r.result is not None and not r.result.ok) else "green" if r.result else "")
            t = r.timings
            table.add_row(
                str(r.step), f"{r.screen[0]}x{r.screen[1]}", Text(clip(r.thought or "", 90)),
                Text(clip(describe_action(r.action))), result,
                str(r.prompt_tokens) if r.prompt_tokens is not None else "-",
                f"{t.observe_ms:.0f}/{t.model_ms:.0f}/{t.parse_ms:.0f}/{t.act_ms:.0f}",
            )
        return table


def outcome(record: StepRecord) -> str:
    """What came of the step, in a few words."""
    if record.parse_error:
        # The problem, without the format reminder that follows it for the model.
        return "parse error: " + record.parse_error.split(". Expected")[0]
    if record.result is not None:
        return record.result.message or ("ok" if record.result.ok else "failed")
    return "-"


def plain_line(record: StepRecord) -> str:
    """One line for a finished step, for logs: no colour, no table, no redraw."""
    t = record.timings
    thought = f" | {clip(record.thought, 60)}" if record.thought else ""
    tokens = f", {record.prompt_tokens} tok" if record.prompt_tokens is not None else ""
    return (f"step {record.step}: {clip(describe_action(record.action))} -> "
            f"{clip(outcome(record), 60)}{thought} ({t.model_ms:.0f} ms model, "
            f"{t.act_ms:.0f} ms act{tokens})")
