"""The CLI's own help: one line per command in a command list, and --version."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


def _groups(group: typer.Typer, path: tuple[str, ...] = ()):
    yield path, group
    for sub in group.registered_groups:
        yield from _groups(sub.typer_instance, (*path, sub.name))


@pytest.mark.parametrize("path, group", list(_groups(app)), ids=lambda v: " ".join(v) or "top"
                         if isinstance(v, tuple) else None)
def test_a_command_list_shows_each_summary_as_flowing_text(path, group):
    shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    # Reflow the table rows: a summary may wrap at the table's edge, never mid-row otherwise.
    rows = [line.strip("│ ").strip() for line in shown.output.splitlines() if line.startswith("│")]
    for command in group.registered_commands:
        summary = " ".join(inspect.cleandoc(command.callback.__doc__).split("\n\n")[0].split())
        assert any(row.endswith(summary) for row in rows), (summary, shown.output)


def test_version_prints_the_installed_version():
    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0
    assert shown.output.strip() == f"vlagent {version('vlagent')}"
