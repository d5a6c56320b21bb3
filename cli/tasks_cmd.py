"""`tasks` commands: the bundled tasks a run, a benchmark or a demonstration can use."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="The bundled tasks (start state + success check).")


@app.command("list")
def list_tasks(
    env: str = typer.Option(None, "--env", "-e", help="Only the tasks of this env."),
) -> None:
    """Print every bundled task: its name (for --task), env and goal at seed 0. A seeded task
    draws its goal's names and values from --seed; a MiniWoB task's goal is its page's
    instruction, read when the page loads."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tasks.registry import get_task, task_names

    tasks = [get_task(name) for name in task_names()]
    tasks = [t for t in tasks if env is None or t.env == env]
    if not tasks:
        typer.echo(f"error: no bundled task runs on --env {env}", err=True)
        raise typer.Exit(2)
    table = Table(title=f"{len(tasks)} task(s); run one with --task NAME", title_justify="left")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("env")
    table.add_column("goal (seed 0)", overflow="fold")
    for task in tasks:
        # A goal may hold square brackets ("fix [bug]"): shown as written, never read as markup.
        table.add_row(task.name, task.env, Text(task.goal))
    Console(soft_wrap=False).print(table)
