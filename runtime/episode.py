"""From a run's settings to a finished episode: build its parts, run the loop, and write the
trajectory and its HTML view. The CLI's run, demo and replay commands, and scripts, call ``run``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pydantic import ValidationError
from rich.console import Console

from agent.history import HistoryPolicy
from agent.loop import Agent, AgentConfig, EpisodeResult, StepObserver
from agent.policies.base import Policy
from agent.safety import ConfirmationGate, GateRules, load_rules
from agent.secrets import SecretError, Secrets
from core.terminal import literal, printable
from envs.base import Env
from model.config import check_repetition_penalty, check_temperature
from runtime.build import (
    EnvFactory,
    check_env,
    make_policy,
    open_env,
    resize_budget,
    resolve_dialect,
    resolve_task,
)
from runtime.settings import RunError, RunSpec, is_endpoint, make_out_folder
from runtime.stop_signals import sigterm_interrupts, stop_signals_held
from tasks.base import Task
from trajectories.recorder import Recorder, new_run_dir, utc_now, write_meta
from trajectories.records import META_FILE, STEPS_FILE, Meta

if TYPE_CHECKING:
    from agent.policies.local import PromptRenderer

#: Builds the step observer for a goal (the CLI's live view), entered around the episode.
ObserverFactory = Callable[[str], AbstractContextManager[StepObserver | None]]


@dataclass
class RunOutcome:
    result: EpisodeResult
    directory: Path
    view: Path
    #: A replay's first step that went otherwise than recorded (``trajectories.divergence``).
    diverged: str | None = None

    @property
    def succeeded(self) -> bool:
        """The episode ended well, with a task its check passed, and a replay repeated its
        recording."""
        result = self.result
        return result.status in ("success", "answered") and (result.check is None
                                                             or result.check.success) \
            and self.diverged is None


class EpisodeCrashed(Exception):
    """The loop met an error it has no outcome for (a bug), after the trajectory started: the
    loop recorded it as the episode's error, and the trajectory and its view are kept."""

    def __init__(self, cause: Exception, directory: Path, view: Path) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.directory = directory
        self.view = view


@dataclass
class Checked:
    """What ``check`` found usable in a run's settings."""

    goal: str
    task: Task | None
    secrets: Secrets
    rules: GateRules
    dialect: str
    min_pixels: int
    max_pixels: int


def check(spec: RunSpec, task: Task | None = None) -> Checked:
    """Read ``spec``'s settings, before anything starts: an unknown env, task or dialect, a
    scripted task without a solution, a goal's secret without its value, unreadable gate rules
    or an unusable resize budget is the RunError (or the file's error) that names it."""
    check_env(spec)
    if task is None:
        goal, task = resolve_task(spec)
    elif task.env != spec.env:
        raise RunError(f"the task {task.name} runs on --env {task.env}, not {spec.env}")
    else:
        goal = task.goal
    decodes = Path(spec.model).is_dir() or is_endpoint(spec.model)
    for option, given in (("--repetition-penalty", spec.repetition_penalty is not None),
                          ("--temperature", spec.temperature != RunSpec.temperature)):
        if given and not decodes:
            raise RunError(f"{option} sets how a model decodes: give --model PATH or an "
                           "endpoint")
    try:
        check_temperature(spec.temperature, "--temperature")
        check_repetition_penalty(spec.repetition_penalty, "--repetition-penalty")
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if task is None and spec.seed:
        raise RunError(f"--seed {spec.seed} draws a task's params and start state, and this run "
                       "has no task: name one with --task NAME")
    if spec.model == "scripted" and task is not None and not task.has_solution:
        raise RunError(f"{task.name} has no scripted solution, so --model scripted cannot run "
                       "it (bench --tag scripted picks the tasks that have one)")
    try:
        secrets = Secrets(spec.secrets)
        secrets.check_goal(goal)
    except SecretError as exc:
        raise RunError(str(exc)) from None
    rules = gate_rules(spec)
    dialect = resolve_dialect(spec)
    return Checked(goal, task, secrets, rules, dialect, *resize_budget(spec))


def gate_rules(spec: RunSpec) -> GateRules:
    """The run's gate rules: from ``spec.gate_rules``' file, or its fields, or the defaults."""
    if spec.gate_rules is None:
        return GateRules()
    if not isinstance(spec.gate_rules, dict):
        return load_rules(spec.gate_rules)
    try:
        return GateRules.model_validate(spec.gate_rules)
    except ValidationError as exc:
        detail = str(exc).replace("\n", "; ")
        raise RunError(f"the recorded gate rules are not valid: {detail}") from None


def run(
    spec: RunSpec, console: Console | None = None, observer: ObserverFactory | None = None, *,
    task: Task | None = None, directory: Path | None = None, env_factory: EnvFactory = open_env,
    policy: Policy | None = None,
) -> RunOutcome:
    """Run ``spec``'s episode. A bench passes the seeded ``task`` it built, the trajectory
    ``directory`` it chose, a ``policy`` it keeps loaded across episodes (left open here), and
    (in tests) an ``env_factory`` other than the real envs."""
    console = console or Console()
    checked = check(spec, task)
    goal, task = checked.goal, checked.task
    if task is not None:
        console.print(f"task [bold]{literal(task.name)}[/]: {literal(task.goal)}", soft_wrap=True)
    made: list[Path] = []  # the folders made for this run, innermost first
    # From here on a SIGTERM unwinds as Ctrl-C does: while the model loads or the env starts
    # (a phone, chromium, Xvfb), what started is stopped and the folders made go again.
    with sigterm_interrupts():
        with _removed_if_unused(made):
            if directory is None:
                # A stop signal between a folder's making and its recording in ``made`` would
                # leave that folder behind: it is handled once both are done, in this block.
                with stop_signals_held():
                    made.extend(_missing(Path(spec.out)))
                    make_out_folder(Path(spec.out), "a run writes its trajectory in a folder "
                                    "of its own inside it")
                    directory = new_run_dir(spec.out, task.name if task is not None else goal)
                    made.insert(0, directory)
            if made:
                # A trajectory from the start: a SIGKILL while the model loads (minutes, for
                # real weights) or the env starts leaves a run of no step that view reads.
                write_meta(directory, Meta(
                    goal=goal, task=task.name if task is not None else None, env=spec.env,
                    model=spec.model, dialect=checked.dialect, action_kinds=[],
                    min_pixels=checked.min_pixels, max_pixels=checked.max_pixels,
                    started_at=utc_now(), reason="stopped before its first step, while the "
                    "model loaded or the env started"))
            return _run_checked(spec, checked, console, observer, directory, env_factory, policy)


def _run_checked(spec: RunSpec, checked: Checked, console: Console,
                 observer: ObserverFactory | None, directory: Path, env_factory: EnvFactory,
                 policy: Policy | None) -> RunOutcome:
    """``run``'s episode, once its settings are checked and its folder is made."""
    from actions.dialects import get_dialect
    from trajectories.viewer import write_view

    goal, task, secrets, dialect_name = checked.goal, checked.task, checked.secrets, checked.dialect
    owned = policy is None
    if policy is None:
        with console.status("loading the model…" if Path(spec.model).is_dir() else "starting…"):
            policy = make_policy(spec, directory)
    # One line each, in a log too (a console that is no terminal is 80 columns wide).
    console.print(f"model: {literal(policy.describe())}, prompted in the {dialect_name} "
                  "dialect", soft_wrap=True)
    if is_endpoint(spec.model) and not (spec.dialect or spec.processor):
        # Its replies would parse, or not, in another family's format: taps land elsewhere.
        console.print("[yellow]note:[/] without --processor CHECKPOINT the served model's "
                      "family is not known, so it is prompted in qwen2vl (Qwen2-VL's); "
                      "give --dialect qwen25vl for a Qwen2.5-VL model, uitars or uitars15 "
                      "for UI-TARS", soft_wrap=True)
    tokens = _prompt_renderer(spec.processor) if spec.processor else None
    history = HistoryPolicy(images=spec.history_images,
                            max_tokens=prompt_budget(spec, (tokens or policy).context_length()),
                            block=spec.history_block)
    config = AgentConfig(
        max_steps=spec.max_steps or (task.max_steps if task is not None
                                     else AgentConfig.max_steps),
        max_time_s=spec.max_time_s,
        max_parse_errors=spec.max_parse_errors, history=history,
        min_pixels=checked.min_pixels, max_pixels=checked.max_pixels,
        max_screen_pixels=spec.max_screen_pixels,
    )
    crash: Exception | None = None
    try:
        with env_factory(spec, console) as (env, device):
            dialect = get_dialect(dialect_name, env.form_factor)
            with (observer or _no_observer)(goal) as view:
                recorder = Recorder(directory)
                agent = Agent(env, policy, dialect, config=config,
                              recorder=recorder, observer=view, tokens=tokens,
                              gate=make_gate(spec, checked.rules, env, console, secrets),
                              secrets=secrets)
                try:
                    result = agent.run(goal, task, device=device,
                                       gate_rules=checked.rules.model_dump(), **env_meta(spec))
                except Exception as exc:
                    if recorder.meta is None:
                        raise  # before the trajectory started: the error as it is
                    crash = exc  # recorded by the loop as the episode's error; raised below
    finally:
        if owned:
            policy.close()
    if crash is not None:
        try:
            view = write_view(directory)
        except Exception:  # noqa: BLE001 - the episode's own error is the one to report
            raise crash from None
        raise EpisodeCrashed(crash, directory, view) from crash
    return RunOutcome(result, directory, write_view(directory))


def _missing(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


@contextmanager
def _removed_if_unused(made: list[Path]) -> Iterator[None]:
    """The folders made for a run (its own, and --out and its parents where they were not there)
    go again if the run fails before its episode starts (the model or the env could not start),
    so a failed start leaves nothing behind: the run's own folder then holds only the meta.json
    written when it was made."""
    try:
        yield
    except BaseException:
        if made and not (made[0] / STEPS_FILE).exists():  # the episode never started
            (made[0] / META_FILE).unlink(missing_ok=True)
        for folder in made:
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


@functools.lru_cache(maxsize=4)
def _prompt_renderer(path: str) -> "PromptRenderer":
    """The processor that counts prompt tokens, loaded once per process (a bench worker runs
    many episodes with the same one)."""
    from agent.policies.local import PromptRenderer
    from runtime.checkpoint import check_checkpoint

    return PromptRenderer.from_pretrained(check_checkpoint(path, weights=False))


def prompt_budget(spec: RunSpec, context: int | None) -> int | None:
    """The prompt's token budget: --max-prompt-tokens, and at most the model's context less the
    reply's tokens, so old screenshots are dropped before the model is asked past its context.
    Replayed replies take no room: a replay's --max-prompt-tokens (``replay``'s, the run's own
    budget) is the budget as it is."""
    if spec.model.startswith("replay:") and spec.max_prompt_tokens is not None:
        return spec.max_prompt_tokens
    fit = None if context is None else context - spec.max_new_tokens
    if fit is not None and fit < 1:
        raise RunError(f"--max-new-tokens {spec.max_new_tokens} leaves no room for a prompt in "
                       f"the model's context of {context} tokens")
    budgets = [b for b in (spec.max_prompt_tokens, fit) if b is not None]
    return min(budgets) if budgets else None


def env_meta(spec: RunSpec) -> dict:
    """The env settings meta.json keeps, so that ``replay`` starts where this run started."""
    if spec.env == "desktop":  # a private Xvfb (a bench's desktop episodes run on one)
        return {"display": "new"} if spec.display == "new" else {}
    if spec.env != "browser":
        return {}
    return {"url": spec.url, "viewport": list(spec.viewport), "scale": spec.scale,
            "allowed_domains": list(spec.allowed_domains)}


def confirm_mode(spec: RunSpec) -> str:
    mode = spec.confirm or ("yes" if spec.model == "scripted" else "ask")
    if mode not in ("ask", "yes", "deny"):
        raise RunError(f"unknown confirm mode {mode!r}; choose ask, yes or deny")
    return mode


def make_gate(spec: RunSpec, rules: GateRules, env: Env, console: Console,
              secrets: Secrets) -> ConfirmationGate:
    mode = confirm_mode(spec)
    if spec.env == "desktop" and mode != "yes":
        # No rule can fire there: say so rather than let --deny-sensitive look like a guard.
        console.print("[yellow]note:[/] the desktop env cannot look up the element under a "
                      "point or the focused one, and it has no open_app or navigate, so the "
                      "safety gate finds no action sensitive here (docs/safety.md)",
                      soft_wrap=True)
    return ConfirmationGate(rules, env, mode, ask=ask_in_terminal(console),  # type: ignore[arg-type]
                            hide=secrets.scrub)


def ask_in_terminal(console: Console) -> Callable[[str], bool | None]:
    """A yes/no question at the terminal: on ``console`` where it is one, else on stderr where
    that is one (the run's output goes to a log or a pipe: ``> run.log``, ``| tee``; written
    into the file, the question left the run waiting unseen). None when there is no terminal
    to ask on. The end of input there (Ctrl-D) is the person's no."""
    import sys

    from rich.prompt import Confirm
    from rich.text import Text

    def ask(question: str) -> bool:
        if not sys.stdin.isatty():
            return None
        # The question is scrubbed of secrets where the gate makes it.
        on = console if console.is_terminal else Console(stderr=True) \
            if sys.stderr.isatty() else None
        if on is None:
            return None
        try:  # as Text: the model's action and the screen's text are shown, never read as markup
            return Confirm.ask(Text(printable(question)), console=on, default=False)
        except EOFError:  # it was "no terminal", where one was asked
            return False

    return ask


def _no_observer(goal: str) -> AbstractContextManager[None]:
    return nullcontext()

