"""The live step view in the terminal: one row per step, and what the agent is doing right now."""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

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
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LiveView:
    """A StepObserver that draws a rich table; with ``live=False`` it prints rows as they come
    (for the human policy, which reads the same terminal)."""

    def __init__(self, console: Console, title: str, live: bool = True) -> None:
        self.console = console
        self.title = title
        self.rows: list[StepRecord] = []
        self.status = Text("starting…", style="dim")
        self._live = Live(self._render(), console=console, refresh_per_second=8,
                          transient=False) if live else None

    def __enter__(self) -> "LiveView":
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.status = Text("")
            self._live.update(self._render())
            self._live.__exit__(None, None, None)

    # StepObserver
    def phase(self, step: int, name: str) -> None:
        self.status = Text(f"step {step}: {_PHASES.get(name, name)}…", style="cyan")
        self._refresh()

    def step(self, record: StepRecord) -> None:
        self.rows.append(record)
        if self._live is None:
            self.console.print(self._table([record], title=None))
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        return Group(self._table(self.rows[-MAX_ROWS:], self.title), self.status)

    def _table(self, rows: list[StepRecord], title: str | None) -> Table:
        table = Table(title=title, title_justify="left", expand=True, show_lines=False)
        table.add_column("#", justify="right", style="bold")
        table.add_column("screen", no_wrap=True)
        table.add_column("thought", ratio=3, overflow="fold")
        table.add_column("action", ratio=3, overflow="fold")
        table.add_column("result", ratio=2, overflow="fold")
        table.add_column("tokens", justify="right")
        # A short header keeps the text columns readable in an 80-column terminal.
        table.add_column("ms o/m/p/a", justify="right", no_wrap=True)
        for r in rows:
            if r.parse_error:
                # The problem, without the format reminder that follows it for the model.
                problem = r.parse_error.split(". Expected")[0]
                result = Text(clip(f"parse error: {problem}"), style="red")
            elif r.result is not None:
                result = Text(clip(r.result.message or "ok"),
                              style="green" if r.result.ok else "red")
            else:
                result = Text("-")
            t = r.timings
            table.add_row(
                str(r.step), f"{r.screen[0]}x{r.screen[1]}", clip(r.thought or "", 90),
                clip(describe_action(r.action)), result,
                str(r.prompt_tokens) if r.prompt_tokens is not None else "-",
                f"{t.observe_ms:.0f}/{t.model_ms:.0f}/{t.parse_ms:.0f}/{t.act_ms:.0f}",
            )
        return table
