"""The typer app behind agent_cli.py: one command per module in this package."""

from __future__ import annotations

import inspect
import os
import sys

import typer

from cli import (
    bench_cmd,
    device_cmd,
    model_cmd,
    parse_cmd,
    record_cmd,
    run_cmd,
    serve_cmd,
    tasks_cmd,
    trajectory_cmd,
)

app = typer.Typer(
    name="vlagent",
    help="Let a Qwen2-VL model operate a phone, a desktop or a browser.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"vlagent {version('vlagent')}")
        except PackageNotFoundError:  # run from a checkout that pip never installed
            typer.echo("vlagent (not installed: pip install -e .)")
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                  help="Print vlagent's version and exit."),
) -> None:
    pass


app.command("run")(run_cmd.run)
app.command("demo")(run_cmd.demo)
app.command("record")(record_cmd.record)
app.command("parse")(parse_cmd.parse)
app.command("view")(trajectory_cmd.view)
app.command("export")(trajectory_cmd.export)
app.command("replay")(trajectory_cmd.replay)
app.command("serve")(serve_cmd.serve)
app.command("bench")(bench_cmd.bench)
app.add_typer(model_cmd.app, name="model")
app.add_typer(tasks_cmd.app, name="tasks", help="The bundled tasks: tasks list.")
app.add_typer(device_cmd.app, name="device", help="Devices: start the virtual phone, list devices.")


def _one_line_summaries(group: typer.Typer) -> None:
    """A command list shows each docstring's first paragraph as one line: in rich mode typer
    would keep the docstring's line breaks there."""
    for command in group.registered_commands:
        if command.short_help is None and command.callback and command.callback.__doc__:
            first = inspect.cleandoc(command.callback.__doc__).split("\n\n")[0]
            command.short_help = " ".join(first.split())
    for sub in group.registered_groups:
        _one_line_summaries(sub.typer_instance)


_one_line_summaries(app)


def main() -> None:
    # A character the terminal's encoding lacks (a latin-1 terminal, a reply's emoji) is shown
    # as its escape: a print must never end a run.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except SystemExit as exc:
        _leave_if_torch_busy(exc.code)
        raise
    _leave_if_torch_busy(0)


def _leave_if_torch_busy(status: object) -> None:
    """End the process at once, with the command's exit status, when the torch thread is
    still inside a call that Ctrl-C stopped waiting for: tearing the interpreter down under it
    would make libtorch abort the process."""
    threads = sys.modules.get("agent.backends.one_thread")  # no torch work without it
    if threads is not None and threads.torch_busy():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status if isinstance(status, int) else 0 if status is None else 1)
