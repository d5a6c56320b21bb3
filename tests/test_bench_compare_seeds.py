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


def test_compare_rates_only_the_episodes_both_runs_hold(tmp_path, monkeypatch):
    """B ran the seeds A ran (with the same outcomes) and two more, which failed: B's extra
    episodes are no change of A's, so the table shows none, and says what it left out."""
    from runtime.bench.merge import merge

    runner = CliRunner()
    args = ["bench", "--suite", "fake", "--episodes", "2"]
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    for out in ("a", "b-same"):
        done = runner.invoke(app, [*args, "--out", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.WRONG)
    done = runner.invoke(app, [*args, "--seed", "2", "--out", str(tmp_path / "b-more")])
    assert done.exit_code == 0, done.output
    merge([tmp_path / "b-same", tmp_path / "b-more"], tmp_path / "b", bench_fakes.RIGHT.catalog)

    compared = runner.invoke(app, ["bench", "--compare", str(tmp_path / "a"),
                                   str(tmp_path / "b")], env={"COLUMNS": "160"})
    assert compared.exit_code == 0, compared.output
    assert "no episode changed its outcome (4 in both runs)" in compared.output
    assert " pts" in compared.output and "-50 pts" not in compared.output, compared.output
    assert "100% (4/4)" in compared.output.split("overall")[1].split("\n")[0]
    assert "left out: 0 only in A, 4 only in B" in compared.output
