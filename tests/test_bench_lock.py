"""Two benches on one --out (the same command run again while the first still runs): the second is
refused, instead of running the same episodes beside the first, appending their lines twice and
replacing the trajectories the first is writing."""

from __future__ import annotations

from runtime.bench.results import read_results
from runtime.bench.runner import run_bench
from runtime.settings import RunError
from tests.bench_fakes import RIGHT, fake_settings


def test_a_second_bench_on_a_running_out_is_refused(tmp_path):
    settings = fake_settings(seed=5)
    refusals: list[str] = []

    def start_another(result) -> None:
        if refusals:
            return
        try:  # while the first bench is between two episodes
            run_bench(settings, tmp_path, runner=RIGHT)
            refusals.append("ran")
        except RunError as exc:
            refusals.append(str(exc))

    run = run_bench(settings, tmp_path, runner=RIGHT, on_result=start_another)
    assert len(refusals) == 1 and "another bench is running" in refusals[0], refusals
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 and run.summary.overall.successes == 4  # each episode ran once
    # Once the first has ended, the same command resumes (here: nothing is left to run).
    again = run_bench(settings, tmp_path, runner=RIGHT)
    assert again.skipped == 4 and len(read_results(tmp_path)) == 4


def test_a_folder_that_takes_no_lock_still_runs(tmp_path, monkeypatch):
    """Some NFS mounts (where docs/bench.md puts a Ray run's --out) refuse locks: the run goes
    on without one rather than not at all."""
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    run = run_bench(fake_settings(episodes=1, seed=0), tmp_path, runner=RIGHT)
    assert run.summary.overall.successes == 2
