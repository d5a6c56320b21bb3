"""What ``bench`` prints names each task in full: a log (not a terminal) is 80 columns wide,
where a table that fits itself to the width cut every name to "desktop/e…"."""

from __future__ import annotations

from typer.testing import CliRunner

import cli.bench_cmd
from cli.app import app
from runtime.bench.execute import JobRunner
from tests.bench_fakes import FakeCatalog, RepeatWord, TypeWord, WrongTypeWord, fake_env


# Longer than the 80 columns of a log: no column may go, nor the names be cut.
class LongNamedTypeWord(TypeWord):
    name = "fake/type-the-word-into-the-box-at-the-top-of-the-screen-and-then-check-what-it-shows"


class LongNamedRepeatWord(RepeatWord):
    name = "fake/type-the-word-into-the-box-at-the-top-several-times-and-then-check-what-it-shows"


def test_the_summary_and_the_comparison_name_every_task_whole_in_a_log(tmp_path, monkeypatch):
    runner = JobRunner(FakeCatalog(LongNamedTypeWord, LongNamedRepeatWord), fake_env)
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: runner)
    cli_runner = CliRunner()
    old, new = tmp_path / "[old] run", tmp_path / "new"
    for out in (old, new):
        done = cli_runner.invoke(app, ["bench", "--suite", "fake", "--out", str(out)],
                                 env={"COLUMNS": "80"})
        assert done.exit_code == 0, done.output
        table = done.output.split("success per task", 1)[1]
        for name in (LongNamedTypeWord.name, LongNamedRepeatWord.name):
            row = next(line for line in table.splitlines() if name in line)
            cells = [cell.strip() for cell in row.split("│")]
            assert cells[1:-1] == [name, "1", "100%", "1", "0", "0", "3"], row

    merged = cli_runner.invoke(app, ["bench", "--merge", str(new), "--out",
                                     str(tmp_path / "merged")], env={"COLUMNS": "80"})
    assert merged.exit_code == 0, merged.output
    compared = cli_runner.invoke(app, ["bench", "--compare", str(old), str(new)],
                                 env={"COLUMNS": "80"})
    assert compared.exit_code == 0, compared.output
    for output in (merged.output, compared.output):
        assert LongNamedTypeWord.name in output and LongNamedRepeatWord.name in output, output
    row = next(line for line in compared.output.splitlines() if LongNamedTypeWord.name in line)
    assert [cell.strip() for cell in row.split("│")][1:-1] == [
        LongNamedTypeWord.name, "100% (1/1)", "100% (1/1)", "+0 pts"], row
    # A folder's name is shown as written, not read as markup.
    assert "[old] run" in compared.output, compared.output


class MarkupNamedTypeWord(TypeWord):
    name = "fake/[bold]type[/]"


class MarkupNamedWrongTypeWord(WrongTypeWord):
    name = MarkupNamedTypeWord.name


def test_folders_and_episodes_named_like_markup_are_printed_as_written(tmp_path, monkeypatch):
    """A resume names its folder, a comparison its changed episodes: as written, where rich
    read them as markup (a "[/]" ended the command with a traceback)."""
    cli_runner = CliRunner()
    runs = []
    for name, task in (("x[/]", MarkupNamedTypeWord), ("[old]run", MarkupNamedWrongTypeWord)):
        runner = JobRunner(FakeCatalog(task), fake_env)
        monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda runner=runner: runner)
        out = tmp_path / name
        for _ in range(2):  # the second one resumes
            done = cli_runner.invoke(app, ["bench", "--suite", "fake", "--out", str(out)])
            assert done.exit_code == 0, done.output
        assert f"resuming {out}: 1 of 1 episodes already done" in done.output, done.output
        runs.append(out)
    compared = cli_runner.invoke(app, ["bench", "--compare", *map(str, runs)])
    assert compared.exit_code == 0, compared.output
    assert f"  {MarkupNamedTypeWord.name}@0: success -> failure" in compared.output, \
        compared.output
