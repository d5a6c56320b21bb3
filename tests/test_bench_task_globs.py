"""``bench --tasks`` repeated: a task matching any of the globs runs, once, however many match it.
It took one glob, and a second ``--tasks`` silently replaced the first."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli.bench_cmd
from cli.app import app
from runtime.bench.catalog import RegistryCatalog
from runtime.bench.plan import plan_jobs
from runtime.bench.results import read_results
from runtime.settings import RunError
from tests import bench_fakes
from tests.bench_fakes import fake_settings

CATALOG = bench_fakes.RIGHT.catalog


def test_repeated_task_globs_run_every_task_they_match(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    done = CliRunner().invoke(app, ["bench", "--suite", "fake", "--tasks", "fake/type-word",
                                    "--tasks", "fake/repeat-word", "--out", str(tmp_path)],
                              env={"COLUMNS": "160"})
    assert done.exit_code == 0, done.output
    assert {r.task for r in read_results(tmp_path)} == {"fake/type-word", "fake/repeat-word"}


def test_a_task_two_globs_match_is_one_task():
    both = plan_jobs(fake_settings(seed=0, tasks=("fake/type-word", "fake/*", "fake/type-word")),
                     CATALOG)
    assert [j.key for j in both] == [j.key for j in plan_jobs(fake_settings(seed=0), CATALOG)]
    # The globs select as a set, so a resume with them in another order is the same run; a run
    # stored with one glob (as a string) or none resumes as before.
    assert fake_settings(seed=0, tasks=("fake/*", "fake/type-word")) == fake_settings(
        seed=0, tasks=("fake/type-word", "fake/*"))
    assert fake_settings(seed=0, tasks="fake/*") == fake_settings(seed=0, tasks=["fake/*"])
    assert fake_settings(seed=0, tasks=None) == fake_settings(seed=0)


@pytest.mark.parametrize("glob", ["fake/typo", ""])  # "": an unset shell variable
def test_a_glob_that_matches_nothing_is_refused_beside_one_that_matches(glob):
    # The empty glob was said to be the whole suite, which has tasks: "no tasks in the suite".
    with pytest.raises(RunError, match=f"no tasks matching '{glob}' in the suite 'fake'"):
        plan_jobs(fake_settings(seed=0, tasks=("fake/type-word", glob)), CATALOG)


def test_a_suite_that_does_not_exist_is_refused_with_the_suites_that_do():
    with pytest.raises(RunError, match=r"no suite 'fkae'; the suites are broken, crash, fake, "):
        plan_jobs(fake_settings(suite="fkae"), CATALOG)
    from tasks.registry import suites

    assert suites() == ["desktop", "miniwob", "phone"]
    with pytest.raises(RunError, match="no suite 'phones'; the suites are desktop, miniwob, "
                                       "phone$"):
        plan_jobs(fake_settings(suite="phones"), RegistryCatalog())


def test_tasks_without_a_solution_are_refused_for_a_scripted_bench_before_it_starts(tmp_path):
    """They ended as runtime errors, so the run failed, and so did every resume of it. A merge
    still plans such a run (made before this check) to count the episodes it left."""
    from runtime.bench.merge import _plan_of
    from runtime.bench.plan import check_runnable
    from runtime.bench.runner import prepare

    catalog = RegistryCatalog()

    def refused(settings):
        check_runnable(settings, catalog)

    with pytest.raises(RunError, match=r"^1 of the 1 tasks have no scripted solution, so "
                                       r"--model scripted cannot run them \(miniwob/chase-circle\)"
                                       r": --tag scripted keeps the tasks that have one$"):
        refused(fake_settings(suite="miniwob", tasks=("miniwob/chase-circle",)))
    with pytest.raises(RunError, match=r"tasks have no scripted solution, .*, \.\.\.\)"):
        refused(fake_settings(suite="miniwob"))
    # Every shard is refused alike, one whose own jobs all have a solution too.
    shards = [fake_settings(suite="miniwob", shard=(i, 130)) for i in range(1, 131)]
    assert any(all(catalog.get(j.task, j.seed).has_solution for j in plan_jobs(s, catalog))
               for s in shards)
    for shard in shards[:3]:
        with pytest.raises(RunError, match="^98 of the 130 tasks have no scripted solution"):
            refused(shard)
    refused(fake_settings(suite="miniwob", tags=("scripted",)))  # those that have one run
    refused(fake_settings(suite="miniwob", model="replay:r.jsonl"))  # and a model runs them all

    class Runner:  # what prepare reads of a runner
        pass

    Runner.catalog = catalog
    old = fake_settings(suite="miniwob", tasks=("miniwob/chase-circle",))
    with pytest.raises(RunError, match="no scripted solution"):
        prepare(old, tmp_path / "new", Runner())
    assert not (tmp_path / "new").exists()  # refused before its folder was made
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "bench.json").write_text(old.model_dump_json())
    assert _plan_of(tmp_path / "old", catalog)[1] == {"miniwob/chase-circle@7",
                                                       "miniwob/chase-circle@8"}
