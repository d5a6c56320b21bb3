"""The bench runner on seeded fake tasks and the fake phone: scores, seeds, resume, workers, Ray,
shards, runtime errors, the reports (in real chromium) and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envs.base import EnvError
from runtime.bench.jobs import EpisodeResult
from runtime.bench.plan import parse_shard, plan_jobs
from runtime.bench.results import read_results
from runtime.bench.runner import run_bench
from runtime.bench.summary import Summary
from runtime.settings import RunError
from tests import bench_fakes
from tests.bench_fakes import PID_MARKING, REPAIRED, RIGHT, SLOW, WRONG, fake_settings
from tests.conftest import copy_checkpoint, require_tool

DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'

ROOT = Path(__file__).resolve().parents[1]


def outcomes(results: list[EpisodeResult]) -> list[tuple]:
    """What a run decided per episode, without timings or order."""
    return sorted((r.key, r.task, r.seed, r.params, r.goal, r.outcome, r.status, r.steps,
                   r.score.model_dump() if r.score else None, r.error is not None)
                  for r in results)


def rates(summary: Summary) -> dict:
    """A summary's parts that depend on what happened, not on how fast."""
    return {"overall": summary.overall, "suites": summary.suites, "tasks": summary.tasks,
            "tags": summary.tags}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One uninterrupted run of the fake suite with one worker."""
    return run_bench(fake_settings(), tmp_path_factory.mktemp("base"), runner=RIGHT)


def test_scripted_solutions_score_every_episode(baseline):
    assert len(baseline.results) == 2 * 2
    assert baseline.summary.overall.success_rate == 1.0
    assert baseline.summary.overall.errors == 0
    assert set(baseline.summary.tasks) == {"fake/repeat-word", "fake/type-word"}
    assert set(baseline.summary.tags) == {"easy", "hard", "typing"}
    for r in baseline.results:
        assert r.outcome == "success" and r.score.reward == 1.0
        assert r.steps == 3 and len(r.timings["act"]) == 3
        assert (baseline.out / r.trajectory / "view.html").is_file()


def test_a_wrong_solution_scores_zero(tmp_path):
    run = run_bench(fake_settings(), tmp_path, runner=WRONG)
    assert run.summary.overall.episodes == 4
    assert run.summary.overall.success_rate == 0.0
    # The agent claimed success each time; the check read the env and disagreed.
    assert all(r.status == "success" and r.outcome == "failure" for r in run.results)
    assert run.summary.overall.failures == 4 and run.summary.overall.errors == 0


def test_the_same_seeds_give_the_same_episodes(baseline, tmp_path):
    again = run_bench(fake_settings(), tmp_path, runner=RIGHT)
    assert outcomes(again.results) == outcomes(baseline.results)
    other = run_bench(fake_settings(seed=1000, episodes=4, tasks="fake/repeat*"),
                      tmp_path / "other", runner=RIGHT)
    goals = {r.goal for r in other.results if r.task == "fake/repeat-word"}
    assert len(goals) > 1, "different seeds should draw different params"
    for r in other.results:
        assert r.params == RIGHT.catalog.get(r.task, r.seed).params


def test_a_run_stopped_after_some_episodes_resumes_to_the_same_summary(baseline, tmp_path):
    first = run_bench(fake_settings(), tmp_path, runner=RIGHT, limit=2)
    assert len(first.results) == 2 and first.summary.planned == 4
    # A kill in the middle of a line, and an episode that was cut short, leave their traces.
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"key": "fake/type-word@9", "sui')
    stale = tmp_path / "trajectories" / "fake-type-word-s9"
    stale.mkdir(parents=True)
    (stale / "steps.jsonl").write_text("{}\n")
    seen = []
    resumed = run_bench(fake_settings(), tmp_path, runner=RIGHT,
                        on_start=lambda total, done: seen.append((total, len(done))))
    assert seen == [(4, 2)] and resumed.skipped == 2
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4  # each episode once, the torn line gone
    assert outcomes(resumed.results) == outcomes(baseline.results)
    assert rates(resumed.summary) == rates(baseline.summary)


def test_a_whole_last_result_without_its_newline_is_kept_on_resume(baseline, tmp_path):
    """An editor may save results.jsonl without a final newline: that line is a result, not a
    line a kill tore, so its episode (and trajectory) is neither dropped nor run again."""
    first = run_bench(fake_settings(), tmp_path, runner=RIGHT, limit=2)
    path = tmp_path / "results.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert len(read_results(tmp_path)) == 2
    trajectories = sorted(p.name for p in (tmp_path / "trajectories").iterdir())
    seen = []
    resumed = run_bench(fake_settings(), tmp_path, runner=RIGHT,
                        on_start=lambda total, done: seen.append((total, len(done))))
    assert seen == [(4, 2)] and resumed.skipped == 2
    assert [r.key for r in read_results(tmp_path)][:2] == [r.key for r in first.results]
    assert len(path.read_text().splitlines()) == 4
    assert set(trajectories) <= {p.name for p in (tmp_path / "trajectories").iterdir()}
    assert outcomes(resumed.results) == outcomes(baseline.results)


def test_a_killed_cli_run_resumes_to_the_same_summary(baseline, tmp_path):
    out = tmp_path / "run"
    code = ("import sys; import cli.bench_cmd as b; from tests import bench_fakes; "
            "b.default_runner = lambda: bench_fakes.SLOW; from cli.app import app; "
            "app(sys.argv[1:])")
    args = ["bench", "--suite", "fake", "--episodes", "2", "--seed", "7", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(read_results(out)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no results within 120 s"
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = len(read_results(out))
    assert 2 <= done < 4
    resumed = run_bench(fake_settings(), out, runner=SLOW)
    assert resumed.skipped == done
    assert outcomes(resumed.results) == outcomes(baseline.results)
    assert rates(resumed.summary) == rates(baseline.summary)


def test_two_worker_processes_give_the_same_results(baseline, tmp_path):
    run = run_bench(fake_settings(), tmp_path, runner=PID_MARKING, workers=2)
    ran_in = {int(p.name.removeprefix("ran-in-")) for p in tmp_path.glob("ran-in-*")}
    # Worker processes ran them, not this one (how many of the two a fast episode reaches
    # depends on when each started).
    assert ran_in and os.getpid() not in ran_in
    assert outcomes(run.results) == outcomes(baseline.results)
    assert rates(run.summary) == rates(baseline.summary)


def test_a_pool_found_broken_when_an_episode_is_handed_to_it_runs_it_in_the_next(
        tmp_path, monkeypatch):
    """A worker that died between two hand-outs broke the pool before the bench saw it: the
    hand-out raised, and the bench ended with a BrokenProcessPool instead of going on."""
    from concurrent.futures.process import BrokenProcessPool

    import runtime.bench.runner as runner

    class BreaksOnce(runner.ProcessPoolExecutor):
        broke = False

        def submit(self, *args, **kwargs):
            if not BreaksOnce.broke and self._pending_work_items:  # the second hand-out
                BreaksOnce.broke = True
                raise BrokenProcessPool("a worker died")
            return super().submit(*args, **kwargs)

    plain = run_bench(fake_settings(), tmp_path / "plain", runner=RIGHT, workers=2)
    monkeypatch.setattr(runner, "ProcessPoolExecutor", BreaksOnce)
    run = run_bench(fake_settings(), tmp_path / "broken", runner=RIGHT, workers=2)
    assert BreaksOnce.broke
    assert outcomes(run.results) == outcomes(plain.results)
    assert len(read_results(tmp_path / "broken")) == len(plain.results)


def test_a_worker_that_dies_ends_its_episodes_in_errors_and_the_run_goes_on(tmp_path):
    run = run_bench(fake_settings(suite="crash", episodes=3), tmp_path, runner=RIGHT, workers=2)
    assert len(run.results) == 6 and len(read_results(tmp_path)) == 6
    died = [r for r in run.results if r.task == "crash/worker-dies"]
    assert all(r.outcome == "error" and "worker process died" in r.error for r in died)
    # A neighbour running beside a dying worker goes down with the pool; the others succeed.
    neighbours = [r for r in run.results if r.task == "crash/type-word"]
    assert all(r.outcome == "success" or "worker process died" in r.error for r in neighbours)
    assert any(r.outcome == "success" for r in neighbours)
    # A lost episode's line names its task's tags and params as its own line would, so the
    # per-tag rates count every episode the per-task ones do ...
    assert run.summary.tags["typing"] == run.summary.overall
    for r in died:
        assert r.params == RIGHT.catalog.get(r.task, r.seed).params
    # ... and its time, which nobody measured, is no zero among the episode times.
    assert run.summary.episode.samples == sum(r.outcome == "success" for r in run.results)
    resumed = run_bench(fake_settings(suite="crash", episodes=3), tmp_path, runner=REPAIRED,
                        workers=2)
    assert resumed.skipped == sum(r.outcome == "success" for r in run.results)
    assert resumed.summary.overall.successes == 6


def test_the_line_of_an_episode_whose_worker_died_counts_the_steps_it_recorded(tmp_path):
    """The steps before the worker died ran (the trajectory holds them): its line counts them,
    with their times, as an episode's own line would, and so do the mean steps."""
    run = run_bench(fake_settings(suite="lost", episodes=2), tmp_path, runner=RIGHT, workers=2)
    assert len(run.results) == 2
    steps = []
    for r in run.results:
        assert r.outcome == "error" and "worker process died" in r.error
        # The one whose worker died a step in; the other one, ended with the broken pool, may
        # not have recorded its first step yet.
        recorded = (tmp_path / r.trajectory / "steps.jsonl").read_text().splitlines() \
            if r.trajectory else []
        assert r.steps == len(recorded) <= 1
        assert [len(r.timings.get(phase, [])) for phase in ("observe", "act")] == [r.steps] * 2
        steps.append(r.steps)
    assert max(steps) == 1
    assert run.summary.overall.mean_steps == sum(steps) / 2
    assert run.summary.latency["act"].samples == sum(steps)


def test_a_worker_sent_sigterm_ends_its_episode_in_an_error_and_the_run_goes_on(tmp_path):
    """``kill PID`` of one worker stops its episode (finalized as interrupted), not the bench:
    the episode is an error line that a resume runs again, the others run on."""
    run = run_bench(fake_settings(suite="stop", episodes=2), tmp_path, runner=RIGHT, workers=2)
    assert len(read_results(tmp_path)) == 4
    by_task = {task: [r for r in run.results if r.task == task]
               for task in ("stop/worker-stopped", "stop/type-word")}
    assert all(r.outcome == "error" and "SIGTERM" in r.error
               for r in by_task["stop/worker-stopped"])
    assert [r.outcome for r in by_task["stop/type-word"]] == ["success", "success"]
    resumed = run_bench(fake_settings(suite="stop", episodes=2), tmp_path, runner=REPAIRED,
                        workers=2)
    assert resumed.skipped == 2 and resumed.summary.overall.successes == 4


def test_ray_tasks_give_the_same_results(baseline, tmp_path, monkeypatch):
    import ray  # a test dependency (the [ray] extra): missing, the install is broken
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = run_bench(fake_settings(), tmp_path, runner=RIGHT, executor="ray")
        crashed = run_bench(fake_settings(suite="crash", episodes=1), tmp_path / "crash",
                            runner=RIGHT, executor="ray")
        # A replay file named relative to the bench's folder, not the workers' (they run where
        # the cluster started): each worker read no file, and every episode was an error.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "done.jsonl").write_text(json.dumps({"response": DONE}) + "\n")
        monkeypatch.chdir(elsewhere)
        replayed = run_bench(fake_settings(model="replay:done.jsonl", tasks="fake/type-word"),
                             tmp_path / "replayed", runner=RIGHT, executor="ray")
    finally:
        ray.shutdown()
    assert outcomes(run.results) == outcomes(baseline.results)
    assert [(r.outcome, r.model) for r in replayed.results] == [("failure",
                                                                 "replay:done.jsonl")] * 2
    # A Ray worker that dies is an error line, not the end of the run.
    by_task = {r.task: r for r in crashed.results}
    assert by_task["crash/type-word"].outcome == "success"
    assert by_task["crash/worker-dies"].outcome == "error"
    assert "Worker" in by_task["crash/worker-dies"].error


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "no Ray cluster answers"),
    ("ray://127.0.0.1:{port}", "no Ray cluster answers"),
    ("headnode", "is not auto, HOST:PORT"),
])
def test_a_ray_address_nobody_answers_is_refused_at_once(tmp_path, address, message):
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RunError, match=message):
        run_bench(fake_settings(), tmp_path, runner=RIGHT, executor="ray",
                  ray_address=address.format(port=port))
    assert time.monotonic() - started < 30
    # Nothing of a run is left in the folder: another bench there is not told it holds one.
    assert list(tmp_path.iterdir()) == []


def test_runtime_errors_are_counted_apart_from_failures(tmp_path):
    run = run_bench(fake_settings(suite="broken", episodes=2), tmp_path, runner=RIGHT)
    s = run.summary
    assert s.overall.episodes == 4 and s.overall.errors == 4 and s.overall.failures == 0
    lost = [r for r in run.results if r.task == "broken/device-lost"]
    assert all(r.status == "error" and "device went away" in r.error and r.score is None
               and r.steps == 2 for r in lost)
    gone = [r for r in run.results if r.task == "broken/no-device"]
    assert all("no device answered" in r.error and r.trajectory is None for r in gone)
    assert set(s.errors) == {r.key for r in run.results}


def test_a_check_the_device_fails_is_a_runtime_error_not_a_failure(tmp_path):
    run = run_bench(fake_settings(suite="unread", episodes=1), tmp_path, runner=RIGHT)
    [r] = run.results
    assert r.outcome == "error" and r.status == "error" and r.score is None
    assert "the check could not run" in r.error and "disconnected" in r.error
    assert r.steps == 3  # the agent's steps are kept
    meta = json.loads((tmp_path / r.trajectory / "meta.json").read_text())
    assert meta["status"] == "error" and "the check could not run" in meta["reason"]
    assert run.summary.overall.failures == 0 and run.summary.overall.errors == 1


def test_a_resume_runs_the_episodes_that_ended_in_errors_again(tmp_path):
    broken = run_bench(fake_settings(suite="broken", episodes=2), tmp_path, runner=RIGHT)
    assert broken.summary.overall.errors == 4
    seen = []
    resumed = run_bench(fake_settings(suite="broken", episodes=2), tmp_path, runner=REPAIRED,
                        on_start=lambda total, done: seen.append((total, done)))
    assert seen == [(4, [])]  # the errors are no earlier outcome: they run again
    assert resumed.skipped == 0 and len(resumed.results) == 4
    assert resumed.summary.overall.errors == 0 and resumed.summary.overall.success_rate == 1.0
    # The new line replaced the error's: one line per episode, as a reader of the file counts.
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(line["key"] for line in lines) == sorted(r.key for r in resumed.results)
    assert {line["outcome"] for line in lines} == {"success"}
    again = run_bench(fake_settings(suite="broken", episodes=2), tmp_path, runner=REPAIRED)
    assert again.skipped == 4  # successes are not run again


def test_shards_are_disjoint_and_cover_the_suite():
    whole = plan_jobs(fake_settings(episodes=5), RIGHT.catalog)
    parts = [plan_jobs(fake_settings(episodes=5, shard=(i, 3)), RIGHT.catalog) for i in (1, 2, 3)]
    keys = [job.key for part in parts for job in part]
    assert sorted(keys) == sorted(job.key for job in whole) and len(set(keys)) == len(keys)
    assert parts[1] == plan_jobs(fake_settings(episodes=5, shard=(2, 3)), RIGHT.catalog)
    assert {j.task for j in parts[0]} == {"fake/repeat-word", "fake/type-word"}
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "1-2", "x"):
        with pytest.raises(RunError, match="--shard"):
            parse_shard(bad)


def test_tags_narrow_the_tasks_of_a_run():
    hard = plan_jobs(fake_settings(tags=("typing", "hard")), RIGHT.catalog)
    assert {j.task for j in hard} == {"fake/repeat-word"}
    # The same tags in another order (or repeated) are the same run, so a resume accepts them.
    assert fake_settings(tags=("hard", "typing", "hard")) == fake_settings(tags=("typing", "hard"))
    with pytest.raises(RunError, match="tagged no-such-tag"):
        plan_jobs(fake_settings(tags=("no-such-tag",)), RIGHT.catalog)


def test_a_resume_with_other_settings_is_refused(baseline):
    with pytest.raises(RunError, match="other settings \\(seed\\)"):
        run_bench(fake_settings(seed=8), baseline.out, runner=RIGHT)


def test_the_report_opens_in_chromium_with_every_task_and_trajectory(baseline):
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    from envs.chromium import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto((baseline.out / "report.html").resolve().as_uri())
            text = page.inner_text("body")
            for name in baseline.summary.tasks:
                assert name in text
            assert page.locator("svg.chart rect.ok").count() >= len(baseline.summary.tasks)
            hrefs = page.eval_on_selector_all("a.trajectory", "els => els.map(e => e.href)")
            assert len(hrefs) == len(baseline.results)
            page.locator("a.trajectory").first.click()
            page.wait_for_load_state()
            assert page.url.endswith("/view.html") and "fake/" in page.inner_text("body")
        finally:
            browser.close()
    from urllib.parse import unquote, urlparse

    assert all(Path(unquote(urlparse(h).path)).is_file() for h in hrefs)


def test_cli_bench_prints_the_summary_and_compares_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    cli_runner = CliRunner()
    args = ["bench", "--suite", "fake", "--episodes", "2"]
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    good = cli_runner.invoke(app, [*args, "--out", str(tmp_path / "a")],
                             env={"COLUMNS": "160"})
    assert good.exit_code == 0, good.output
    assert "fake/type-word" in good.output and "4/4 succeeded" in good.output
    # Not on a terminal (a log, CI), where no bar is drawn: one line per finished episode.
    lines = [line for line in good.output.splitlines()
             if re.match(r"\d/4 fake/[\w-]+@\d+: success \(\d+ steps, [\d.]+ s\) \| ", line)]
    assert [line.split(" ", 1)[0] for line in lines] == ["1/4", "2/4", "3/4", "4/4"], good.output
    assert lines[-1].endswith("| success 100% (4/4), errors 0")
    assert Summary.model_validate_json((tmp_path / "a" / "summary.json").read_text()) \
        .overall.successes == 4
    assert "| fake/repeat-word | 2 | 100% |" in (tmp_path / "a" / "report.md").read_text()
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.WRONG)
    bad = cli_runner.invoke(app, [*args, "--out", str(tmp_path / "b")], env={"COLUMNS": "160"})
    assert bad.exit_code == 0, bad.output
    compared = cli_runner.invoke(app, ["bench", "--compare", str(tmp_path / "a"),
                                       str(tmp_path / "b")], env={"COLUMNS": "160"})
    assert compared.exit_code == 0, compared.output
    assert "4 episode(s) changed their outcome" in compared.output
    assert "fake/type-word@0: success -> failure" in compared.output
    refused = cli_runner.invoke(app, [*args, "--model", "human", "--out", str(tmp_path / "c")])
    assert refused.exit_code == 2 and "cannot run a bench" in refused.output


@pytest.mark.parametrize("option, said", [(["--dialect", "bogus"], "unknown --dialect 'bogus'"),
                                           (["--model", "replay:nope.jsonl"], "does not exist")])
def test_cli_bench_refuses_settings_no_episode_could_run_before_storing_them(
        tmp_path, monkeypatch, option, said):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    done = CliRunner().invoke(app, ["bench", "--suite", "fake", "--out", str(tmp_path / "b"),
                                    *option], env={"COLUMNS": "200"})
    assert done.exit_code == 2 and said in done.output, done.output
    assert not (tmp_path / "b").exists()  # a corrected command may use the same --out


def _one_layer_more(config: dict) -> dict:
    config["text_config"]["num_hidden_layers"] += 1
    return config


def _wider_vocab(config: dict) -> dict:
    config["text_config"]["vocab_size"] += 8
    return config


@pytest.mark.parametrize("breaks, said", [
    (lambda path: (path / "tokenizer.json").unlink(), "has no tokenizer.json"),
    # Found from the tensors' headers: every episode would end in the same load error.
    (lambda path: copy_checkpoint(path, path.with_name("x"), change=_one_layer_more),
     "tensors missing from"),
    (lambda path: copy_checkpoint(path, path.with_name("x"), change=_wider_vocab),
     "shape mismatch for"),
], ids=["no-tokenizer", "a-layer-short", "vocab-shape"])
def test_cli_bench_refuses_a_checkpoint_that_cannot_load_with_one_worker_too(
        tmp_path, tiny_checkpoint, breaks, said):
    from typer.testing import CliRunner

    from cli.app import app

    copied = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    broken = breaks(copied) or copied
    for workers in ("1", "2"):
        done = CliRunner().invoke(app, ["bench", "--suite", "phone", "--tasks", "phone/write-note",
                                        "--model", str(broken), "--workers", workers,
                                        "--out", str(tmp_path / "b")], env={"COLUMNS": "200"})
        assert done.exit_code == 2 and said in done.output, done.output
        assert not (tmp_path / "b").exists()


def test_a_pixel_budget_no_episode_can_use_is_refused_once(tiny_checkpoint, tmp_path):
    """Under the checkpoint's min_pixels every episode would end in the same error, and the run's
    stored settings would hold the budget for each resume."""
    from typer.testing import CliRunner

    from cli.app import app

    done = CliRunner().invoke(app, ["bench", "--suite", "phone", "--tasks", "phone/write-note",
                                    "--model", str(tiny_checkpoint), "--max-pixels", "1",
                                    "--out", str(tmp_path / "b")], env={"COLUMNS": "200"})
    assert done.exit_code == 2, done.output
    assert "min_pixels 3136 above max_pixels 1" in done.output
    assert not (tmp_path / "b").exists()


def test_corrupt_run_files_end_in_one_error_line(baseline, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    torn = Path(shutil.copytree(baseline.out, tmp_path / "torn"))
    with open(torn / "results.jsonl", "a") as f:
        f.write('{bad\n{"x": 1}\n')
    garbled = Path(shutil.copytree(baseline.out, tmp_path / "garbled"))
    (garbled / "bench.json").write_text("{bad")
    cases = [(["--compare", str(torn), str(baseline.out)], "results.jsonl:5 is not"),
             (["--merge", str(torn), "--out", str(tmp_path / "m1")], "results.jsonl:5 is not"),
             (["--suite", "fake", "--episodes", "2", "--seed", "7", "--out", str(torn)],
              "results.jsonl:5 is not"),
             (["--suite", "fake", "--episodes", "2", "--seed", "7", "--out", str(garbled)],
              "bench.json does not hold a bench run's settings"),
             (["--merge", str(garbled), "--out", str(tmp_path / "m2")],
              "bench.json does not hold a bench run's settings")]
    for args, said in cases:
        done = CliRunner().invoke(app, ["bench", *args], env={"COLUMNS": "300"})
        assert done.exit_code == 2, done.output
        assert "Traceback" not in done.output and said in done.output, done.output
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


@pytest.mark.parametrize("edit,said", [
    (dict(steps=-7), "steps: Input should be greater than or equal to 0"),
    (dict(seed=-1), "seed: Input should be greater than or equal to 0"),
    (dict(seed=5), "is not its task@seed"),
    (dict(wall_s=float("inf")), "wall_s: Input should be a finite number"),
    (dict(prompt_tokens=-3), "prompt_tokens: Input should be greater than or equal to 0"),
])
def test_a_results_line_no_run_writes_is_refused_by_its_field(baseline, tmp_path, edit, said):
    """An edited line (a negative step count, a seed its key does not name) would give a summary
    with a mean of -2.5 steps, or stand in for another episode on resume and merge."""
    edited = Path(shutil.copytree(baseline.out, tmp_path / "edited"))
    lines = (edited / "results.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), **edit})  # json writes inf as Infinity
    (edited / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match=rf"results.jsonl:1 is not an episode's result "
                                       rf"\(.*{re.escape(said)}"):
        read_results(edited)


def test_shards_run_apart_merge_into_the_whole_run(baseline, tmp_path):
    from runtime.bench.merge import merge

    for i in (1, 2):
        run_bench(fake_settings(shard=(i, 2)), tmp_path / f"s{i}", runner=RIGHT)
    summary = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "all")
    merged = read_results(tmp_path / "all")
    assert outcomes(merged) == outcomes(baseline.results)
    assert rates(summary) == rates(baseline.summary)
    assert all((tmp_path / "all" / r.trajectory / "view.html").is_file() for r in merged)
    with pytest.raises(RunError, match="merge into a new folder"):
        merge([tmp_path / "s1"], tmp_path / "all")


def test_a_merge_of_an_unfinished_shard_counts_its_missing_episodes(baseline, tmp_path,
                                                                     monkeypatch):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    run_bench(fake_settings(shard=(1, 2)), tmp_path / "s1", runner=RIGHT)
    run_bench(fake_settings(shard=(2, 2)), tmp_path / "s2", runner=RIGHT, limit=1)
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: RIGHT)
    merged = CliRunner().invoke(app, ["bench", "--merge", str(tmp_path / "s1"), "--merge",
                                      str(tmp_path / "s2"), "--out", str(tmp_path / "all")],
                                env={"COLUMNS": "160"})
    assert merged.exit_code == 0, merged.output
    summary = Summary.model_validate_json((tmp_path / "all" / "summary.json").read_text())
    assert summary.planned == 4 and summary.overall.episodes == 3
    assert "1 of 4 planned episodes have no result" in merged.output
    assert "3 of 4 episodes" in (tmp_path / "all" / "report.md").read_text()


def test_a_tiny_random_checkpoint_fails_the_tasks_without_runtime_errors(tiny_checkpoint,
                                                                        tmp_path, monkeypatch):
    from agent.policies import local

    loads = []
    load = local.LocalPolicy.__init__
    monkeypatch.setattr(local.LocalPolicy, "__init__",
                        lambda self, *a, **kw: (loads.append(a), load(self, *a, **kw))[1])
    run = run_bench(fake_settings(model=str(tiny_checkpoint), tasks="fake/type-word", episodes=2,
                             max_new_tokens=8, max_pixels=56 * 56 * 4), tmp_path, runner=RIGHT)
    assert len(run.results) == 2 and len(loads) == 1  # one load for the worker's episodes
    for result in run.results:
        assert result.outcome == "failure" and result.error is None, result
        assert result.score is not None and not result.score.success
        assert result.prompt_tokens and result.generated_tokens


def test_workers_ask_one_model_loaded_once_and_decode_together(tiny_checkpoint, tmp_path,
                                                               monkeypatch):
    """--workers 2 with a checkpoint: the workers ask the model this process serves (one load),
    their requests decode in batches of both episodes' rows, and every episode writes the
    replies and results of a one-worker run."""
    import model.session
    from agent.backends import local
    from runtime.bench import shared_model
    from trajectories.reader import load

    # Worker processes start seconds apart on a loaded machine: the first batch waits for both.
    monkeypatch.setattr(shared_model, "GANG_WAIT_S", 10.0)
    monkeypatch.setattr(shared_model.secrets, "token_urlsafe", lambda n: "the-runs-own-key")
    loads, rows = [], []
    real_init, real_decode = local.LocalBackend.__init__, model.session.decode_rows
    monkeypatch.setattr(local.LocalBackend, "__init__",
                        lambda self, *a, **kw: (loads.append(kw), real_init(self, *a, **kw))[1])
    monkeypatch.setattr(model.session, "decode_rows", lambda model_, state, *args, **kw: (
        rows.append(state.logits.shape[0]), real_decode(model_, state, *args, **kw))[1])
    run = fake_settings(model=str(tiny_checkpoint), tasks="fake/type-word", episodes=4,
                   max_new_tokens=8, max_pixels=56 * 56 * 4)
    one = run_bench(run, tmp_path / "one", runner=RIGHT)
    loads.clear(), rows.clear()
    two = run_bench(run, tmp_path / "two", runner=RIGHT, workers=2)
    assert outcomes(two.results) == outcomes(one.results)
    for a, b in zip(one.results, two.results):
        replies = [[s.response for s in load(r / t.trajectory).steps]
                   for r, t in ((tmp_path / "one", a), (tmp_path / "two", b))]
        assert replies[0] == replies[1] and replies[0], a.key
        assert (a.prompt_tokens, a.generated_tokens) == (b.prompt_tokens, b.generated_tokens)
    assert [kw.get("sessions") for kw in loads] == [2]  # the server's, loaded here
    assert sum(rows) == sum(r.steps for r in two.results)  # every step asked the server
    assert max(rows) == 2, rows  # ... and the episodes' decode steps ran together
    # The server's key reached the workers only: no file of the run holds it.
    for path in (tmp_path / "two").rglob("*"):
        assert not path.is_file() or b"the-runs-own-key" not in path.read_bytes(), path


def test_a_prompt_past_the_models_context_ends_at_the_limit_on_either_path(tiny_checkpoint,
                                                                          tmp_path):
    """The tiny checkpoint's context is 4,096 tokens; a full-size screenshot's prompt is more.
    In the worker's own model or through the bench's served one, the episode ends with status
    limit before the model is asked (the served model would refuse it)."""
    run = fake_settings(model=str(tiny_checkpoint), tasks="fake/type-word", episodes=2,
                   max_new_tokens=8)
    one = run_bench(run, tmp_path / "one", runner=RIGHT)
    two = run_bench(run, tmp_path / "two", runner=RIGHT, workers=2)
    assert outcomes(one.results) == outcomes(two.results)
    for result in one.results + two.results:
        assert (result.outcome, result.status, result.steps) == ("failure", "limit", 0), result
        assert "over the budget of 4088" in result.reason


def test_cli_bench_runs_a_checkpoint_with_the_generation_settings_given(tiny_checkpoint,
                                                                       tmp_path, monkeypatch):
    """--dtype, --max-new-tokens and --max-pixels reach the episodes' model and the run's stored
    settings (a dtype by its short name); a resume with another dtype is refused."""
    from typer.testing import CliRunner

    import cli.bench_cmd
    from agent.backends import local
    from cli.app import app
    from runtime.bench.runner import load_settings
    from trajectories.reader import load

    backends = []
    real_init = local.LocalBackend.__init__
    monkeypatch.setattr(local.LocalBackend, "__init__",
                        lambda self, *a, **kw: (backends.append(self), real_init(self, *a, **kw))[1])
    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    args = ["bench", "--suite", "fake", "--tasks", "fake/type-word", "--episodes", "1",
            "--model", str(tiny_checkpoint), "--max-new-tokens", "3",
            "--max-pixels", str(56 * 56 * 4), "--out", str(tmp_path / "run")]
    done = CliRunner().invoke(app, [*args, "--dtype", "bfloat16"], env={"COLUMNS": "160"})
    assert done.exit_code == 0, done.output
    assert [b.describe().rsplit(" ", 1)[-1] for b in backends] == ["(bfloat16)"]
    stored = load_settings(tmp_path / "run")
    assert (stored.dtype, stored.max_new_tokens, stored.max_pixels) == ("bf16", 3, 56 * 56 * 4)
    [result] = read_results(tmp_path / "run")
    steps = load(tmp_path / "run" / result.trajectory).steps
    assert steps and all(0 < s.usage["new_tokens"] <= 3 for s in steps)
    again = CliRunner().invoke(app, [*args, "--dtype", "fp32"], env={"COLUMNS": "160"})
    assert again.exit_code == 2 and "other settings (dtype)" in again.output


@pytest.mark.parametrize("extra, message", [
    (["--model", "{ckpt}", "--dtype", "fp8"], "--dtype 'fp8' is not one of"),
    (["--dtype", "bf16"], "give --model PATH"),
    (["--compile"], "give --model PATH"),
])
def test_cli_bench_refuses_a_dtype_it_cannot_use_before_any_episode(tiny_checkpoint, tmp_path,
                                                                   monkeypatch, extra, message):
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.RIGHT)
    extra = [a.replace("{ckpt}", str(tiny_checkpoint)) for a in extra]
    refused = CliRunner().invoke(app, ["bench", "--suite", "fake", "--out", str(tmp_path / "r"),
                                       *extra], env={"COLUMNS": "160"})
    assert refused.exit_code == 2 and message in refused.output, refused.output
    assert not (tmp_path / "r").exists()


def test_the_bench_serves_its_workers_the_checkpoint_in_the_dtype_given(tiny_checkpoint,
                                                                       monkeypatch):
    from agent.backends import local
    from runtime.bench.shared_model import serve_to_workers

    backends = []
    real_init = local.LocalBackend.__init__
    monkeypatch.setattr(local.LocalBackend, "__init__",
                        lambda self, *a, **kw: (backends.append(self), real_init(self, *a, **kw))[1])
    jobs = plan_jobs(fake_settings(model=str(tiny_checkpoint), dtype="bf16"), RIGHT.catalog)
    with serve_to_workers(jobs, 2):
        [backend] = backends
        assert backend.describe().endswith("(bfloat16)") and len(backend.sessions) == 2


class PaymentPhone(bench_fakes.FakePhone):
    """Its text box reads as a "Send money" button, which the gate finds sensitive."""

    def element_at(self, x, y):
        from envs.base import ElementInfo

        return ElementInfo("Send money")


def test_on_a_real_phone_the_gate_refuses_what_a_sandbox_allows(tmp_path):
    """Bench allows sensitive actions on its sandboxed envs (nobody is there to ask), but never
    on a real phone (``--device SERIAL``)."""
    import contextlib

    from runtime.bench.execute import JobRunner

    @contextlib.contextmanager
    def payment_env(spec, console):
        yield PaymentPhone(), "fake"

    runner = JobRunner(RIGHT.catalog, payment_env)
    sandbox = run_bench(fake_settings(tasks="fake/type-word", episodes=1), tmp_path / "v",
                        runner=runner)
    real = run_bench(fake_settings(tasks="fake/type-word", episodes=1, device="R58M12345"),
                     tmp_path / "r", runner=runner)
    for run, decision in ((sandbox, "allowed"), (real, "denied")):
        [r] = run.results
        first = json.loads((run.out / r.trajectory / "steps.jsonl").read_text().splitlines()[0])
        assert first["gate"]["decision"] == decision and first["gate"]["rule"] == "tap_text"
        assert first["result"]["ok"] == (decision == "allowed")  # the tap ran only then


def test_parallel_episodes_on_one_real_phone_are_refused(tmp_path):
    """``--workers 2 --device SERIAL`` would run two episodes at once on the one phone, each
    tapping in the middle of the other's; on this machine's Ray instance as well."""
    for executor in ("local", "ray"):
        with pytest.raises(RunError, match="--device R58M12345 is one phone"):
            run_bench(fake_settings(device="R58M12345"), tmp_path / executor, runner=PID_MARKING,
                      workers=2, executor=executor)
        assert not (tmp_path / executor).exists()  # refused before any episode or setting


def test_a_reason_in_the_markdown_report_is_shown_as_written(baseline):
    """A check's reason may quote the model's answer: in report.md it is neither HTML nor
    markdown (emphasis, code, a link)."""
    from runtime.bench.report import markdown

    hostile = "answered '<img src=x onerror=alert(1)>' *b* [x](javascript:1) `c` | d"
    first = baseline.results[0]
    results = [first.model_copy(update={"score": first.score.model_copy(
        update={"reason": hostile})}), *baseline.results[1:]]
    [row] = [line for line in markdown(results, baseline.summary).splitlines()
             if "answered" in line]
    assert "<img" not in row and "&lt;img src=x onerror=alert(1)&gt;" in row
    assert r"\*b\* \[x\](javascript:1) \`c\` \| d" in row


def test_the_reports_show_the_reward_a_failed_episode_earned(baseline):
    """A task may give part of its reward without success (a MiniWoB page's partial credit):
    both reports show each task's mean reward beside its success rate."""
    from runtime.bench.report import html, markdown

    first = baseline.results[0]
    half = first.model_copy(update={"outcome": "failure", "score": first.score.model_copy(
        update={"success": False, "reward": 0.5})})
    results = [half, *baseline.results[1:]]
    summary = Summary.of(results)
    assert summary.tasks[first.task].mean_reward == 0.75
    assert f"| {first.task} | 2 | 50% | 0.75 | 1 | 0 | 3 |" in markdown(results, summary)
    cells = "".join(f"<td>{c}</td>" for c in (first.task, 2, "50%", 0.75, 1, 0, 3))
    assert f"<tr>{cells}</tr>" in html(results, summary)


@contextlib.contextmanager
def _launch_fails(spec, console):
    """A browser launch's error: a message, then Playwright's call log, line after line."""
    raise EnvError("could not launch chromium\nCall log:\n  - <launching> /usr/bin/chromium\n"
                   "  - [pid=1] <gracefully close start>")
    yield  # pragma: no cover - a generator for contextmanager's sake


def test_outside_a_terminal_each_episode_is_one_line_whatever_its_error_holds(tmp_path,
                                                                              monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner",
                        lambda: replace(bench_fakes.RIGHT, env_factory=_launch_fails))
    done = CliRunner().invoke(app, ["bench", "--suite", "fake", "--episodes", "2", "--out",
                                    str(tmp_path / "run")], env={"COLUMNS": "160"})
    assert done.exit_code == 1, done.output  # no episode ran to a result
    assert done.stderr.startswith("error: 4 of 4 episodes ended in a runtime error"), done.stderr
    progress = done.stdout.split("success per task")[0].strip().splitlines()
    assert len(progress) == 4, done.output
    for line in progress:
        assert re.match(r"\d/4 fake/[\w-]+@\d+: error: EnvError: could not launch chromium Call "
                        r"log: - <launching> /usr/bin/chromium - \[pid=1\] <gracefully close "
                        r"start> \(0 steps, [\d.]+ s\) \| ", line), line
    # No bar in a log, not even its last state ("fake ━━━━ 4/4 ...") at the end.
    assert not re.search(r"^fake\s+━", done.output, re.MULTILINE), done.output
    # The whole message is kept where results are read.
    assert "\nCall log:\n" in read_results(tmp_path / "run")[0].error


def test_a_bench_whose_agent_failed_its_tasks_exits_0(tmp_path, monkeypatch):
    """A failed task is a result of the bench, not a failure of it (runtime errors are: see
    test_outside_a_terminal_each_episode_is_one_line_whatever_its_error_holds)."""
    from typer.testing import CliRunner

    import cli.bench_cmd
    from cli.app import app

    monkeypatch.setattr(cli.bench_cmd, "default_runner", lambda: bench_fakes.WRONG)
    done = CliRunner().invoke(app, ["bench", "--suite", "fake", "--out", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    assert "overall: 0/2 succeeded (0%), 0 runtime errors" in done.stdout
    assert done.stderr == ""
