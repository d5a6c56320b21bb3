"""How an episode ends around its last step: a Ctrl-C or SIGTERM while the task's check or
tear-down runs, a tear-down that breaks, and a final action (terminate, answer) that the safety
gate refuses. Each ends with a finished trajectory (meta.json holds the status, the reason and
the end time) and the check runs at most once."""

from __future__ import annotations

import io
import os
import signal

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent
from agent.safety import SafetyGate, Verdict
from core.results import Score
from runtime.stop_signals import sigterm_interrupts
from tests.agent_fakes import FakePhone, ListPolicy, NameTheColourTask
from trajectories.reader import load
from trajectories.recorder import Recorder

TAP = '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}'
DONE = '*FUNCTION*: Terminate *ARGS*: {"status": "success"}'
ANSWER = '*FUNCTION*: Answer *ARGS*: {"text": "%s"}'


class CountingTask(NameTheColourTask):
    """Counts its checks and tear-downs; ``on_check`` / ``on_tear_down`` run inside them."""

    def __init__(self, on_check=None, on_tear_down=None) -> None:
        super().__init__(seed=4)
        self.checks: list[str | None] = []
        self.tear_downs = 0
        self.on_check = on_check
        self.on_tear_down = on_tear_down

    def check(self, env, answer):
        self.checks.append(answer)
        if self.on_check is not None:
            self.on_check()
        return Score(success=answer == self.params["colour"], reason=f"answered {answer!r}")

    def tear_down(self, env):
        self.tear_downs += 1
        if self.on_tear_down is not None:
            self.on_tear_down()


def run(replies, task, tmp_path, gate=None):
    env = FakePhone()
    policy = ListPolicy(replies)
    agent = Agent(env, policy, get_dialect("qwen2vl", env.form_factor), gate=gate,
                  recorder=Recorder(tmp_path / "traj"))
    return agent, env, policy


def finish(agent, task):
    """``agent.run``, failing the test (not stopping pytest) where an interrupt escapes it."""
    try:
        return agent.run(task.goal, task)
    except KeyboardInterrupt as exc:
        pytest.fail(f"the interrupt escaped the loop: {exc!r}")


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_while_the_check_runs_ends_the_episode_as_interrupted(tmp_path):
    """The user stops the run while the task's check reads the device: the trajectory is
    finished as interrupted (not left "running"), and the task is still torn down."""
    task = CountingTask(on_check=sigterm)
    agent, _, _ = run([ANSWER % "blue"], task, tmp_path)
    with sigterm_interrupts():
        result = finish(agent, task)
    assert (result.status, result.reason, result.steps) == ("interrupted", "stopped by SIGTERM", 1)
    assert result.check is None  # the check never finished
    assert len(task.checks) == 1 and task.tear_downs == 1
    traj = load(tmp_path / "traj")
    assert (traj.meta.status, traj.meta.reason, traj.meta.steps) == (
        "interrupted", "stopped by SIGTERM", 1)
    assert traj.meta.finished_at is not None and traj.meta.check is None
    assert traj.steps[0].action == {"kind": "answer", "text": "blue"}


def test_ctrl_c_while_the_task_is_torn_down_ends_the_episode_as_interrupted(tmp_path):
    """A second Ctrl-C (the tear-down after an interrupted step), or a first one while a
    finished episode tears down, still finishes the trajectory."""

    def ctrl_c():
        raise KeyboardInterrupt

    task = CountingTask(on_tear_down=ctrl_c)
    agent, _, _ = run([TAP, ANSWER % task.params["colour"]], task, tmp_path)
    result = finish(agent, task)
    assert (result.status, result.reason, result.steps) == ("interrupted", "stopped by Ctrl-C", 2)
    assert len(task.checks) == 1 and task.tear_downs == 1
    meta = load(tmp_path / "traj").meta
    assert (meta.status, meta.reason, meta.steps) == ("interrupted", "stopped by Ctrl-C", 2)
    assert meta.finished_at is not None
    assert meta.check is not None and meta.check.success  # the check had run: it is kept

    # Ctrl-C in the loop, then again in the tear-down.
    def first(request):
        raise KeyboardInterrupt

    task = CountingTask(on_tear_down=ctrl_c)
    agent, _, _ = run(first, task, tmp_path / "again")
    result = finish(agent, task)
    assert (result.status, result.steps) == ("interrupted", 0)
    assert task.checks == [] and task.tear_downs == 1
    meta = load(tmp_path / "again" / "traj").meta
    assert meta.status == "interrupted" and meta.finished_at is not None


def test_a_tear_down_that_breaks_still_finishes_the_trajectory(tmp_path):
    """A bug in a task's tear-down propagates, as a bug in its check does, after meta.json says
    the episode ended in an error and why."""

    def broken():
        raise KeyError("restore")

    task = CountingTask(on_tear_down=broken)
    agent, _, _ = run([ANSWER % task.params["colour"]], task, tmp_path)
    with pytest.raises(KeyError):
        agent.run(task.goal, task)
    assert len(task.checks) == 1
    meta = load(tmp_path / "traj").meta
    assert meta.status == "error" and meta.finished_at is not None
    assert meta.reason == "the task's tear-down failed: KeyError: 'restore'"


class Refuses(SafetyGate):
    """Refuses the first action of ``kind``, allows everything else."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.refused = 0

    def review(self, action, context):
        if action.kind == self.kind and not self.refused:
            self.refused += 1
            return Verdict(False, f"no {self.kind} yet", rule="custom", by="test")
        return Verdict(True)


def test_a_terminate_the_gate_refuses_does_not_end_the_episode(tmp_path):
    """A refused action is not executed, and the model reads why: for terminate, the episode
    goes on instead of ending with the status the gate refused."""
    gate = Refuses("terminate")
    agent, env, policy = run([DONE, TAP, DONE], None, tmp_path, gate=gate)
    result = agent.run("Open the thing")
    assert (result.status, result.steps) == ("success", 3)
    assert len(env.executed) == 1 and env.executed[0].kind == "tap"
    second = "".join(m.text() for m in policy.requests[1].prompt.messages)
    assert "blocked by the safety gate: no terminate yet" in second
    steps = load(tmp_path / "traj").steps
    assert steps[0].gate.decision == "denied" and not steps[0].result.ok


def test_an_answer_the_gate_refuses_is_not_the_episodes_answer(tmp_path):
    """The check reads only an answer the gate let through, and reads it once."""
    task = CountingTask()
    gate = Refuses("answer")
    colour = task.params["colour"]
    agent, _, policy = run([ANSWER % "not telling", ANSWER % colour], task, tmp_path, gate=gate)
    result = agent.run(task.goal, task)
    assert (result.status, result.answer, result.steps) == ("answered", colour, 2)
    assert task.checks == [colour] and result.check.success
    second = "".join(m.text() for m in policy.requests[1].prompt.messages)
    assert "blocked by the safety gate: no answer yet" in second


def test_sigterm_while_the_env_starts_stops_what_started(tmp_path):
    """A SIGTERM while the env starts (a bench worker stopped, `kill` of a run) unwinds as
    Ctrl-C does, so the processes that already started are stopped; it used to end the process
    on the spot and leave them running."""
    from contextlib import contextmanager

    from rich.console import Console

    from runtime.episode import run as run_episode
    from runtime.settings import RunSpec

    stopped = []

    @contextmanager
    def starting_phone(spec, console):
        try:
            sigterm()  # arrives while the phone starts
            yield FakePhone(), None
        finally:
            stopped.append("phone")

    spec = RunSpec(goal="g", model="human", out=tmp_path / "runs")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM"):
        run_episode(spec, Console(file=io.StringIO()), env_factory=starting_phone,
                    policy=ListPolicy([DONE]))
    assert stopped == ["phone"]
    assert signal.getsignal(signal.SIGTERM) is before  # given back


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_as_the_run_folder_is_made_leaves_no_folder(tmp_path, monkeypatch, stop):
    """A SIGTERM or Ctrl-C right after the run's folder was made, before the run knew it had
    made it, left the folder (and --out) behind; it is handled once the folder is known."""
    from rich.console import Console

    import runtime.episode
    from runtime.episode import run as run_episode
    from runtime.settings import RunSpec

    made = runtime.episode.new_run_dir

    def made_then_stopped(root, label):
        directory = made(root, label)
        os.kill(os.getpid(), stop)
        return directory

    monkeypatch.setattr(runtime.episode, "new_run_dir", made_then_stopped)
    spec = RunSpec(goal="g", model="human", out=tmp_path / "runs" / "a")
    with pytest.raises(KeyboardInterrupt):
        run_episode(spec, Console(file=io.StringIO()), env_factory=lambda spec, console: None,
                    policy=ListPolicy([DONE]))
    assert not (tmp_path / "runs").exists()
