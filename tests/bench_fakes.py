"""Seeded fake tasks on the fake phone, for the bench tests: catalogs that a job runner carries to
worker processes and Ray tasks (so everything here is defined at module level and pickles)."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Iterator

from core.actions import Tap, Terminate, Type
from core.results import Score
from envs.base import EnvError
from runtime.bench.execute import JobRunner
from runtime.bench.plan import BenchSettings
from tasks.base import SolutionStep, Task
from tests.agent_fakes import FakePhone

WORDS = ("apple", "river", "cobalt", "maple", "quartz", "tundra", "violet", "walnut", "zephyr")


def fake_settings(**kw) -> BenchSettings:
    """Settings for a bench of the fake suite with scripted solutions: two episodes from seed 7,
    unless ``kw`` says otherwise."""
    return BenchSettings(**{"suite": "fake", "episodes": 2, "seed": 7, "model": "scripted", **kw})


class FakeTask(Task):
    """The task contract on the fake phone (seeded params, a templated goal, check(env, answer))."""

    env = "android"
    goal_template = ""
    tags: frozenset[str] = frozenset()
    max_steps = 6

    def __init__(self, seed: int = 0, params: dict[str, Any] | None = None) -> None:
        self.seed = seed
        self.params = dict(params) if params is not None \
            else self.sample_params(random.Random(seed))

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"word": rng.choice(WORDS), "times": rng.randint(1, 3)}

    @property
    def goal(self) -> str:  # type: ignore[override]
        return self.goal_template.format(**self.params)

    def initialize(self, env) -> None:
        env.typed = ""

    setup = initialize  # the name today's Env.reset calls

    def expected(self) -> str:
        raise NotImplementedError

    def check(self, env, answer: str | None = None) -> Score:
        want = self.expected()
        return Score(success=env.typed == want,
                     reward=1.0 if env.typed == want else 0.0,
                     reason=f"typed {env.typed!r}, wanted {want!r}")

    def solution(self, env) -> Iterator[SolutionStep]:
        yield SolutionStep(Tap(x=540, y=300), "Focus the box.")
        yield SolutionStep(Type(text=self.expected()), "Type it.")
        yield SolutionStep(Terminate(status="success"), "Done.")


class TypeWord(FakeTask):
    name = "fake/type-word"
    goal_template = "Type the word {word}"
    tags = frozenset({"typing", "easy"})

    def expected(self) -> str:
        return self.params["word"]


class RepeatWord(FakeTask):
    name = "fake/repeat-word"
    goal_template = "Type {word} {times} times"
    tags = frozenset({"typing", "hard"})

    def expected(self) -> str:
        return self.params["word"] * self.params["times"]


class WrongTypeWord(TypeWord):
    """Negative control: the same task, but the solution types the word backwards."""

    def solution(self, env) -> Iterator[SolutionStep]:
        yield SolutionStep(Type(text=self.expected()[::-1]), "Type it (wrongly).")
        yield SolutionStep(Terminate(status="success"), "Done (it claims).")


class WrongRepeatWord(RepeatWord):
    """Negative control: stops before typing anything, yet claims success."""

    def solution(self, env) -> Iterator[SolutionStep]:
        yield SolutionStep(Terminate(status="success"), "Done (it claims).")


class DeviceLost(TypeWord):
    """The env fails mid-episode (see ``fake_env``): a runtime error, not a task failure."""

    name = "broken/device-lost"


class NoDevice(TypeWord):
    """The env cannot even start (see ``fake_env``)."""

    name = "broken/no-device"


class CheckLost(TypeWord):
    """The phone goes away between the agent's last step and the check reading its state."""

    name = "unread/check-lost"

    def check(self, env, answer: str | None = None) -> Score:
        raise EnvError("the phone disconnected before its state was read")


class WorkerDies(TypeWord):
    """Its env takes down the whole worker process (see ``fake_env``), as the OOM killer would."""

    name = "crash/worker-dies"


class CrashNeighbour(TypeWord):
    """A sound task in the same suite, run by the workers around the dying one."""

    name = "crash/type-word"


class DiesMidEpisode(TypeWord):
    """Its worker process dies at the episode's second action (see ``DyingPhone``), a step in."""

    name = "lost/dies-mid-episode"


class WorkerStopped(TypeWord):
    """Its worker process is sent SIGTERM mid-episode (see ``StoppedPhone``): ``kill PID``."""

    name = "stop/worker-stopped"


class StopNeighbour(TypeWord):
    name = "stop/type-word"


class TypePin(FakeTask):
    """Unlock a phone whose PIN is the user's secret PIN: the goal and the solution name only
    ``<secret:PIN>``, so the episode succeeds only when the device got the value."""

    name = "secret/type-pin"
    goal_template = "Unlock the phone with <secret:PIN>"

    def check(self, env, answer: str | None = None) -> Score:
        unlocked = env.typed == env.pin
        # The reason quotes what was typed, as a real check's might: the runtime must hide it.
        return Score(success=unlocked, reward=float(unlocked), reason=f"typed {env.typed!r}")

    def solution(self, env) -> Iterator[SolutionStep]:
        yield SolutionStep(Tap(x=540, y=300), "Focus the PIN box.")
        yield SolutionStep(Type(text="<secret:PIN>"), "Type the PIN.")
        yield SolutionStep(Terminate(status="success"), "Unlocked.")


class RefusedPin(TypePin):
    """The device refuses to start, and its error quotes the PIN (see ``locked_env``)."""

    name = "secret/refused"


class LockedPhone(FakePhone):
    def __init__(self, pin: str) -> None:
        super().__init__()
        self.pin = pin


class FakeCatalog:
    def __init__(self, *classes: type[FakeTask]) -> None:
        self.classes = {cls.name: cls for cls in classes}

    def find(self, pattern: str | None, suite: str) -> list[type[Task]]:
        return [cls for name, cls in sorted(self.classes.items())
                if name.split("/", 1)[0] == suite
                and (pattern is None or fnmatch.fnmatchcase(name, pattern))]

    def get(self, name: str, seed: int) -> Task:
        return self.classes[name](seed=seed)

    def suites(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.classes})


@contextlib.contextmanager
def fake_env(spec, console):
    if spec.task == NoDevice.name:
        raise EnvError("no device answered")
    if spec.task == WorkerDies.name:
        time.sleep(0.3)  # long enough for a neighbour to be running too
        os._exit(9)
    if spec.task == WorkerStopped.name:
        yield StoppedPhone(), "fake"
        return
    if spec.task == DiesMidEpisode.name:
        yield DyingPhone(), "fake"
        return
    phone = FakePhone(fail_observe_at=2 if spec.task == DeviceLost.name else None)
    yield phone, "fake"


class StoppedPhone(FakePhone):
    """Its first action sends SIGTERM to the process running it (a bench worker)."""

    def _execute(self, action):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the signal arrives meanwhile
        return super()._execute(action)


class DyingPhone(FakePhone):
    """Takes down the process running it at its second action, as the OOM killer would."""

    def _execute(self, action):
        if self.executed:
            os._exit(9)
        return super()._execute(action)


class SlowPhone(FakePhone):
    """Each action takes a while, so a test can kill a run between two episodes."""

    delay = 0.15  # seconds an action takes

    def _execute(self, action):
        time.sleep(self.delay)
        return super()._execute(action)


@contextlib.contextmanager
def slow_fake_env(spec, console):
    yield SlowPhone(), "fake"


@contextlib.contextmanager
def pid_marking_env(spec, console):
    """``fake_env``, leaving a file named after the process that ran the episode in --out."""
    (Path(spec.out) / f"ran-in-{os.getpid()}").touch()
    with fake_env(spec, console) as made:
        yield made


@contextlib.contextmanager
def repaired_env(spec, console):
    """The devices of the broken suite are back."""
    yield FakePhone(), "fake"


@contextlib.contextmanager
def locked_env(spec, console):
    """A phone locked with the user's own PIN: the value the run was given as the secret PIN."""
    pin = spec.secrets["PIN"]
    if spec.task == RefusedPin.name:
        raise EnvError(f"the device refused the PIN {pin}")
    yield LockedPhone(pin), "fake"


RIGHT = JobRunner(FakeCatalog(TypeWord, RepeatWord, DeviceLost, NoDevice, CheckLost, WorkerDies,
                              CrashNeighbour, DiesMidEpisode, WorkerStopped, StopNeighbour),
                   fake_env)
SLOW = JobRunner(RIGHT.catalog, slow_fake_env)
PID_MARKING = JobRunner(RIGHT.catalog, pid_marking_env)
WRONG = JobRunner(FakeCatalog(WrongTypeWord, WrongRepeatWord), fake_env)
REPAIRED = JobRunner(RIGHT.catalog, repaired_env)
LOCKED = JobRunner(FakeCatalog(TypePin, RefusedPin), locked_env)
