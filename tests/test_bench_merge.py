"""``bench --merge`` of shards that hold no result: a shard with no job (more shards than jobs)
or one stopped before its first episode ended is still a run of the suite, not a folder given
by mistake."""

from __future__ import annotations

import pytest

from runtime.bench.merge import merge
from runtime.bench.plan import plan_jobs
from runtime.bench.results import read_results
from runtime.bench.runner import run_bench
from runtime.settings import RunError
from tests.bench_fakes import RIGHT, fake_settings


def test_shards_without_results_merge_into_the_whole_run(tmp_path):
    whole = plan_jobs(fake_settings(episodes=1, seed=3), RIGHT.catalog)
    assert len(whole) == 2  # so the third of three shards has no job
    for i in (1, 2, 3):
        run_bench(fake_settings(episodes=1, seed=3, shard=(i, 3)), tmp_path / f"s{i}",
                  runner=RIGHT)
    summary = merge([tmp_path / f"s{i}" for i in (1, 2, 3)], tmp_path / "all", RIGHT.catalog)
    assert summary.planned == 2 and summary.overall.successes == 2
    assert {r.key for r in read_results(tmp_path / "all")} == {j.key for j in whole}

    # A shard stopped before any episode ended: its episodes show as unfinished.
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 3)), tmp_path / "t2", runner=RIGHT,
              limit=0)
    summary = merge([tmp_path / "s1", tmp_path / "t2"], tmp_path / "part", RIGHT.catalog)
    assert summary.planned == 2 and summary.overall.episodes == 1


def test_a_folder_that_is_no_run_is_refused(tmp_path):
    run_bench(fake_settings(episodes=1, seed=3), tmp_path / "run", runner=RIGHT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no bench results"):
        merge([tmp_path / "run", tmp_path / "empty"], tmp_path / "all", RIGHT.catalog)
    assert not (tmp_path / "all").exists()
    # A folder that is not there (a typo) says so, not that a run wrote nothing in it.
    from runtime.bench.compare import compare

    with pytest.raises(RunError, match="runn does not exist"):
        merge([tmp_path / "run", tmp_path / "runn"], tmp_path / "all", RIGHT.catalog)
    with pytest.raises(RunError, match="runn does not exist"):
        compare(tmp_path / "run", tmp_path / "runn")


def test_a_merged_report_links_to_shards_in_folders_of_any_name(tmp_path):
    """The merged reports link through the shards' folders: a space, '#', '?' or ')' in a
    folder's name must not cut the link short (a fragment, a query, the end of a markdown link)."""
    import html
    import re
    from urllib.parse import unquote, urlsplit

    shards = [tmp_path / "shard #1 (of 2)", tmp_path / "shard 2?"]
    for i, shard in enumerate(shards, start=1):
        run_bench(fake_settings(episodes=1, seed=3, shard=(i, 2)), shard, runner=RIGHT)
    merge(shards, tmp_path / "all", RIGHT.catalog)
    markdown = (tmp_path / "all" / "report.md").read_text()
    page = (tmp_path / "all" / "report.html").read_text()
    links = re.findall(r"\[view\]\((\S*)\)", markdown) + [
        html.unescape(h) for h in re.findall(r"class='trajectory' href='([^']*)'", page)]
    assert len(links) == 4, links
    for link in links:
        view = tmp_path / "all" / unquote(urlsplit(link).path)
        assert view.name == "view.html" and view.is_file(), link


def test_runs_of_other_models_or_budgets_are_not_merged(tmp_path):
    """Shards may select other episodes (another seed, suite slice), but results run with another
    model, dialect or budget would make one success rate of two setups."""
    run_bench(fake_settings(episodes=1, seed=3, shard=(1, 2)), tmp_path / "s1", runner=RIGHT)
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 2), max_steps=2, dialect="uitars"),
              tmp_path / "s2", runner=RIGHT)
    with pytest.raises(RunError, match=r"s2 ran its episodes with other settings than \S*s1 "
                       r"\(dialect None against 'uitars', max_steps None against 2\)"):
        merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "all", RIGHT.catalog)
    assert not (tmp_path / "all").exists()

    # Other episodes of the same setup merge: another seed is a selection, not a setup.
    run_bench(fake_settings(episodes=1, seed=9), tmp_path / "later", runner=RIGHT)
    summary = merge([tmp_path / "s1", tmp_path / "later"], tmp_path / "both", RIGHT.catalog)
    assert summary.planned == 3  # the first shard's one (of two) and the later run's two


def test_a_merge_merged_again_keeps_its_plan_and_its_setup(tmp_path):
    """A merge's folder is a source of a later merge (shards merged in stages): it still counts
    the episodes its sources planned, and still refuses results run another way."""
    run_bench(fake_settings(episodes=1, seed=3, shard=(1, 2)), tmp_path / "s1", runner=RIGHT,
              limit=0)  # stopped before its one episode ended
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 2)), tmp_path / "s2", runner=RIGHT)
    merge([tmp_path / "s2"], tmp_path / "m1", RIGHT.catalog)
    once = merge([tmp_path / "s1", tmp_path / "m1"], tmp_path / "m2", RIGHT.catalog)
    again = merge([tmp_path / "m2"], tmp_path / "m3", RIGHT.catalog)
    assert (once.planned, once.overall.episodes) == (2, 1)
    assert (again.planned, again.overall.episodes) == (2, 1)

    run_bench(fake_settings(episodes=1, seed=9, dialect="uitars"), tmp_path / "other",
              runner=RIGHT)
    with pytest.raises(RunError, match=r"other ran its episodes with other settings than "
                                       r"\S*m3 \(dialect None against 'uitars'\)"):
        merge([tmp_path / "m3", tmp_path / "other"], tmp_path / "mixed", RIGHT.catalog)
    assert not (tmp_path / "mixed").exists()


@pytest.mark.parametrize("limit", [None, 0], ids=["finished", "no result yet"])
def test_results_without_settings_are_held_to_the_model_the_others_name(tmp_path, limit):
    """A folder of results alone (no bench.json) has no settings to compare, but each line names
    the model and dialect it ran with: held to the other source's lines, or to its settings
    when it has no result yet."""
    run_bench(fake_settings(episodes=1, seed=3, shard=(1, 2)), tmp_path / "run", runner=RIGHT,
              limit=limit)
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 2), model="replay:other.jsonl"),
              tmp_path / "other", runner=RIGHT)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "results.jsonl").write_bytes(
        (tmp_path / "other" / "results.jsonl").read_bytes())
    with pytest.raises(RunError, match=r"bare ran its episodes with other settings than \S*run "
                                       r"\(model 'scripted' against 'replay:other.jsonl'\)"):
        merge([tmp_path / "run", tmp_path / "bare"], tmp_path / "all", RIGHT.catalog)
    assert not (tmp_path / "all").exists()


def test_a_bench_into_a_merged_folder_is_refused(tmp_path):
    """A merge's folder has results but no run settings: a bench there would take the merged
    results, run by whatever model, for its own."""
    run_bench(fake_settings(episodes=1, seed=3), tmp_path / "run", runner=RIGHT)
    merge([tmp_path / "run"], tmp_path / "merged", RIGHT.catalog)
    before = (tmp_path / "merged" / "results.jsonl").read_bytes()
    with pytest.raises(RunError, match=r"merged holds results but no bench.json"):
        run_bench(fake_settings(episodes=2, seed=3, dialect="uitars"), tmp_path / "merged",
                  runner=RIGHT)
    assert (tmp_path / "merged" / "results.jsonl").read_bytes() == before
    assert not (tmp_path / "merged" / "bench.json").exists()


def test_an_episodes_outcome_wins_over_a_runtime_error_from_either_source(tmp_path):
    """A shard run again where its device was lost holds errors for episodes another source
    finished: those say nothing about the task, whichever source is named last."""
    from runtime.bench.results import ResultsWriter

    run_bench(fake_settings(episodes=1, seed=3), tmp_path / "ran", runner=RIGHT)
    finished = read_results(tmp_path / "ran")
    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / "bench.json").write_bytes((tmp_path / "ran" / "bench.json").read_bytes())
    with ResultsWriter(lost / "results.jsonl") as writer:
        for r in finished:
            writer.append(r.model_copy(update={"outcome": "error", "status": "error",
                                               "error": "the device went away"}))
    for order in (["ran", "lost"], ["lost", "ran"]):
        out = tmp_path / "-".join(order)
        summary = merge([tmp_path / name for name in order], out, RIGHT.catalog)
        assert summary.overall.errors == 0
        assert summary.overall.successes == summary.overall.episodes == len(finished)


def test_a_source_named_by_its_results_file_is_checked_as_its_folder(tmp_path):
    run_bench(fake_settings(episodes=1, seed=3, shard=(1, 2)), tmp_path / "s1", runner=RIGHT)
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 2), max_steps=2), tmp_path / "s2",
              runner=RIGHT)
    with pytest.raises(RunError, match=r"s2 ran its episodes with other settings"):
        merge([tmp_path / "s1" / "results.jsonl", tmp_path / "s2"], tmp_path / "x",
              RIGHT.catalog)
    run_bench(fake_settings(episodes=1, seed=3, shard=(2, 2)), tmp_path / "t2", runner=RIGHT)
    merge([tmp_path / "s1" / "results.jsonl", tmp_path / "t2" / "results.jsonl"],
          tmp_path / "all", RIGHT.catalog)
    for r in read_results(tmp_path / "all"):
        assert (tmp_path / "all" / r.trajectory / "view.html").is_file(), r.trajectory
    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(RunError, match="notes.txt is a file; --merge takes a bench run's folder"):
        merge([tmp_path / "s1", tmp_path / "notes.txt"], tmp_path / "y", RIGHT.catalog)
