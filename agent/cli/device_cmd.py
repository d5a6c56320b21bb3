"""Placeholder: filled in by the issue that owns this command group."""

import typer

app = typer.Typer(no_args_is_help=True)
