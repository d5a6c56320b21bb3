"""Every registered task, on a real env: its check fails on the start state and passes after its
scripted solution ran (the solution's actions go through ``env.execute``, as in an episode).

One virtual phone serves the whole module; each task's ``initialize`` resets the apps.
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
def env_for(request):
    def env_for(kind: str):
        if kind == "android":
            return request.getfixturevalue("android")
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
