"""From a run's settings to a finished episode: pick the task, open the env, build the policy,
run the loop with a live view, and write the trajectory and its HTML view.

The CLI's ``run``, ``demo`` and ``replay`` commands are thin wrappers around ``run``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rich.console import Console

from agent.history import HistoryPolicy
from agent.loop import Agent, AgentConfig, EpisodeResult
from agent.policies.base import Policy
from agent.recorder import Recorder, new_run_dir
from envs.base import Env
from model.resize import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from tasks.base import Task

ENV_KINDS = ("android", "desktop", "browser")
MODEL_HELP = "PATH (a local Qwen2-VL checkpoint), scripted, replay:FILE or human"


class RunError(ValueError):
    """Settings that cannot make a run; the message says what to change."""


@dataclass
class RunSpec:
    goal: str | None
    model: str
    env: str = "android"
    device: str | None = None  # an adb serial, "virtual", or None for the only device
    task: str | None = None
    dialect: str | None = None  # None: qwen2vl, or a replayed trajectory's own dialect
    max_steps: int = 30
    max_time_s: float | None = None
    max_parse_errors: int = 2
    history_images: int = 2
    max_prompt_tokens: int | None = None  # drop old screenshots until the prompt fits
    out: Path = Path("runs")
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    url: str = "about:blank"  # the browser env's start page
    processor: str | None = None  # count prompt tokens with this checkpoint's processor
    max_new_tokens: int = 256
    temperature: float = 0.0


@dataclass
class RunOutcome:
    result: EpisodeResult
    directory: Path
    view: Path


def resolve_task(spec: RunSpec) -> tuple[str, Task | None]:
    """The goal and task of a run. ``--model scripted`` with a free goal finds the bundled task
    that the goal means."""
    from tasks.registry import get_task, match_task, task_names

    task = get_task(spec.task) if spec.task else None
    if task is None and spec.model == "scripted":
        task = match_task(spec.goal or "", spec.env)
        if task is None:
            raise RunError(
                f"--model scripted plays a task's own solution, and no bundled task matches the "
                f"goal {spec.goal!r}. Name one with --task NAME; the tasks are: "
                f"{', '.join(task_names())}"
            )
    if task is not None and task.env != spec.env:
        raise RunError(f"the task {task.name} runs on --env {task.env}, not {spec.env}")
    # A matched task's own goal is the precise one its solution and check are about.
    goal = task.goal if task is not None and (spec.model == "scripted" or not spec.goal) \
        else spec.goal
    if not goal:
        raise RunError("give a GOAL, or a task with --task NAME")
    return goal, task


def resolve_dialect(spec: RunSpec) -> str:
    from actions.dialects import DIALECTS

    name = spec.dialect
    source = Path(spec.model[len("replay:"):]) if spec.model.startswith("replay:") else None
    if not name and source is not None and source.is_dir():
        from agent.trajectory import load

        name = load(source).meta.dialect  # its replies are written in that dialect
    name = name or "qwen2vl"
    if name not in DIALECTS:
        raise RunError(f"unknown --dialect {name!r}; choose {', '.join(DIALECTS)}")
    return name


def make_policy(spec: RunSpec, directory: Path) -> Policy:
    model = spec.model
    if model == "scripted":
        from agent.policies.scripted import ScriptedPolicy

        return ScriptedPolicy()
    if model == "human":
        from agent.policies.human import HumanPolicy
        from agent.trajectory import image_name

        # The recorder writes each screenshot before the policy is asked, so it can be opened.
        return HumanPolicy(screenshot=lambda step: str((directory / image_name(step)).resolve()))
    if model.startswith("replay:"):
        from agent.policies.replay import ReplayPolicy

        return ReplayPolicy(model[len("replay:"):])
    if not Path(model).is_dir():
        raise RunError(f"--model {model!r} is not a checkpoint directory; give {MODEL_HELP}")
    from agent.policies.local import LocalPolicy

    return LocalPolicy(model, max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)



@contextlib.contextmanager
def open_env(spec: RunSpec, console: Console) -> Iterator[tuple[Env, str | None]]:
    """The env for ``spec`` and the device it drives; ``--device virtual`` starts a virtual phone
    for the run and stops it afterwards."""
    if spec.env not in ENV_KINDS:
        raise RunError(f"unknown --env {spec.env!r}; choose {', '.join(ENV_KINDS)}")
    if spec.env == "browser":
        from envs.browser import BrowserEnv

        with BrowserEnv(start_url=spec.url) as env:
            yield env, None
        return
    if spec.env == "desktop":
        from envs.desktop import DesktopEnv

        with DesktopEnv() as env:
            yield env, None
        return
    from envs.android import AndroidEnv

    if spec.device == "virtual":
        from envs.virtual_phone import VirtualPhone
        from envs.virtual_phone.adb_host import PrivateAdbServer

        with contextlib.ExitStack() as stack:
            # A private adb server: the run never touches the user's own (port 5037).
            with console.status("starting the virtual phone and a private adb server…"):
                phone = stack.enter_context(VirtualPhone(port=0))
                adb = stack.enter_context(PrivateAdbServer())
                adb.connect(phone.serial)
                env = stack.enter_context(AndroidEnv(serial=phone.serial, adb_port=adb.port))
            console.print(f"virtual phone at {phone.serial} (adb server on port {adb.port})")
            yield env, "virtual"
        return
    with AndroidEnv(serial=spec.device) as env:
        yield env, spec.device


def run(spec: RunSpec, console: Console | None = None) -> RunOutcome:
    from actions.dialects import get_dialect
    from agent.live import LiveView
    from agent.viewer import write_view

    console = console or Console()
    goal, task = resolve_task(spec)
    dialect_name = resolve_dialect(spec)
    if task is not None:
        console.print(f"task [bold]{task.name}[/]: {task.goal}")
    directory = new_run_dir(spec.out, task.name if task is not None else goal)
    with console.status("loading the model…" if Path(spec.model).is_dir() else "starting…"):
        policy = make_policy(spec, directory)
    console.print(f"model: {policy.describe()}")
    tokens = None
    if spec.processor:
        from agent.policies.local import PromptRenderer

        tokens = PromptRenderer.from_pretrained(spec.processor)
    history = HistoryPolicy(images=spec.history_images, max_tokens=spec.max_prompt_tokens)
    config = AgentConfig(
        max_steps=spec.max_steps, max_time_s=spec.max_time_s,
        max_parse_errors=spec.max_parse_errors, history=history,
        min_pixels=spec.min_pixels, max_pixels=spec.max_pixels,
    )
    try:
        with open_env(spec, console) as (env, device):
            dialect = get_dialect(dialect_name, env.action_kinds)
            # The human policy reads this terminal, so it gets plain rows instead of a live table.
            with LiveView(console, goal, live=spec.model != "human") as view:
                agent = Agent(env, policy, dialect, config=config,
                              recorder=Recorder(directory), observer=view, tokens=tokens)
                result = agent.run(goal, task, device=device)
    finally:
        policy.close()
    return RunOutcome(result, directory, write_view(directory))


def report(outcome: RunOutcome, console: Console) -> None:
    result = outcome.result
    style = "green" if result.status in ("success", "answered") else "red"
    console.print(f"status: [{style}]{result.status}[/] after {result.steps} step(s): "
                  f"{result.reason}")
    if result.check is not None:
        mark = "[green]passed[/]" if result.check.success else "[red]failed[/]"
        console.print(f"check: {mark} ({result.check.detail})")
    console.print(f"trajectory: {outcome.directory.resolve()}", soft_wrap=True)
    console.print(f"view: {outcome.view.resolve()}", soft_wrap=True)


def succeeded(result: EpisodeResult) -> bool:
    return result.status in ("success", "answered") and (result.check is None
                                                         or result.check.success)
