"""``bench --compare`` of runs made with other seeds: no episode ran in both, which it says,
instead of "no episode changed its outcome" beside a table of tasks that all changed."""

from __future__ import annotations

from typer.testing import CliRunner

import cli.bench_cmd
from cli.app import app
from tests import bench_fakes


def test_compare_says_when_the_runs_share_no_episode(tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["bench", "--suite", "fake", "--episodes", "2"]
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    for out, seed in (("a", "0"), ("same", "0")):
        done = runner.invoke(app, [*args, "--seed", seed, "--out", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.WRONG)
    done = runner.invoke(app, [*args, "--seed", "50", "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output

    compared = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a"),
                                   str(tmp_path / "b")], env={"COLUMNS": "160"})
    assert compared.exit_code == 0, compared.output
    assert "-100 pts" in compared.output  # every task dropped ...
    assert "no episode changed" not in compared.output  # ... on other episodes
    assert "the runs share no episode" in compared.output

    same = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a"),
                               str(tmp_path / "same")], env={"COLUMNS": "160"})
    assert same.exit_code == 0, same.output
    assert "no episode changed its outcome (4 in both runs)" in same.output
