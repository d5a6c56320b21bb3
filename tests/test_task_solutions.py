"""Every registered task, on a real env: its check fails on the start state and passes after its
scripted solution ran (the solution's actions go through ``env.execute``, as in an episode).

One virtual phone serves the whole module; each task's ``initialize`` resets the apps. Each
desktop task gets a private Xvfb of its own, as a bench episode does.
"""

from __future__ import annotations

import pytest

from tasks.registry import get_task, task_names

SEEDS = (0, 7)


@pytest.fixture(scope="module")
def android(virtual_phone):
    from envs.android import AndroidEnv

    phone, adb = virtual_phone
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        yield env


@pytest.fixture
def desktop(desktop_programs):
    from envs.desktop import DesktopEnv
    from envs.xvfb import Xvfb

    with Xvfb() as display, DesktopEnv(display=display.display,
                                       xauthority=display.xauthority) as env:
        yield env


@pytest.fixture
def env_for(request):
    def env_for(kind: str):
        if kind in ("android", "desktop"):
            return request.getfixturevalue(kind)
        pytest.fail(f"no {kind} env here yet: add a fixture for it to {__file__}")
    return env_for


@pytest.mark.parametrize("seed", SEEDS)
# The miniwob suite's solutions run through the real loop in test_miniwob.py.
@pytest.mark.parametrize("name", [n for n in task_names() if not n.startswith("miniwob/")])
def test_check_fails_at_the_start_and_passes_after_the_solution(name, seed, env_for):
    task = get_task(name, seed=seed)
    env = env_for(task.env)
    env.reset(task.initialize)
    before = task.check(env, None)
    assert not before.success and before.reward < 1, f"{task!r} is done before it starts: {before}"

    answer = None
    steps = 0
    for step in task.solution(env):
        steps += 1
        if step.action.kind == "terminate":
            assert step.action.status == "success"
            break
        if step.action.kind == "answer":
            answer = step.action.text
            break
        result = env.execute(step.action)
        assert result.ok, f"step {steps} ({step.action}) failed: {result.message}"
    else:
        pytest.fail(f"the solution of {name} neither terminated nor answered")
    assert steps <= task.max_steps, f"the solution needs {steps} steps, the budget is " \
                                    f"{task.max_steps}"
    after = task.check(env, answer)
    assert after.success and after.reward == 1, after
    task.tear_down(env)


class ClaimsSuccessAtOnce:
    """Negative control for the desktop suite: each task's solution ends at once, claiming
    success without acting (a question gets a wrong answer)."""

    def find(self, pattern, suite):
        from runtime.bench.catalog import RegistryCatalog

        return RegistryCatalog().find(pattern, suite)

    def get(self, name, seed):
        from core.actions import Answer, Terminate
        from tasks.base import SolutionStep

        task = get_task(name, seed=seed)
        last = Answer(text="no idea") if "answer" in task.tags else Terminate(status="success")
        task.solution = lambda env: iter([SolutionStep(last, "Done (it claims).")])
        return task


def _desktop_bench(out, runner=None):
    from runtime.bench.plan import BenchSettings
    from runtime.bench.runner import run_bench

    # Seed 3: one no other test of this module runs.
    return run_bench(BenchSettings(suite="desktop", seed=3, model="scripted"), out, runner=runner)


def test_the_desktop_suite_succeeds_through_the_loop(desktop_programs, tmp_path):
    """Each desktop task's scripted solution, in the dialect's text through the agent loop, on a
    private Xvfb per episode (the bench's runner)."""
    from tasks.registry import find_tasks

    run = _desktop_bench(tmp_path)
    assert len(run.results) == len(find_tasks(suite="desktop")) >= 6
    failed = [(r.task, r.outcome, r.reason, r.error) for r in run.results if r.outcome != "success"]
    assert not failed
    assert all(r.trajectory and (tmp_path / r.trajectory / "meta.json").is_file()
               for r in run.results)


def test_a_desktop_solution_that_does_nothing_scores_zero(desktop_programs, tmp_path):
    from runtime.bench.execute import JobRunner

    run = _desktop_bench(tmp_path, JobRunner(catalog=ClaimsSuccessAtOnce()))
    assert run.results and run.summary.overall.success_rate == 0.0
    # The agent claimed success (or answered); the checks read the programs' files and state.
    assert all(r.outcome == "failure" and r.status in ("success", "answered")
               for r in run.results), [(r.task, r.outcome, r.error) for r in run.results]
