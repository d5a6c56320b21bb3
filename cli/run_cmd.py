"""``run`` and ``demo``: run an agent on a goal with a live step view, and record the trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, List

import typer

from agent.history import HistoryPolicy
from cli.model_options import (
    DIALECT_HELP,
    FOR_A_CHECKPOINT,
    compile_option,
    dtype_option,
    max_new_tokens_option,
    refuse_without_checkpoint,
    repetition_penalty_option,
    temperature_option,
)
from cli.scrubbed import print_error, print_path, scrubbed_console
from cli.secret_option import parse_secrets, secret_option
from core.terminal import literal

if TYPE_CHECKING:
    from rich.console import Console

    from runtime.episode import ObserverFactory, RunOutcome
    from runtime.settings import RunSpec

    #: Runs a spec's episode: ``runtime.episode.run``, or ``runtime.record.record``.
    Runner = Callable[[RunSpec, Console, ObserverFactory], RunOutcome]

ENV_HELP = "Where the agent acts: android (adb), desktop (X11) or browser (chromium)."
DEVICE_HELP = ("android: an adb serial, or 'virtual' to start the bundled virtual phone for this "
               "run. Default: the only attached device.")
TASK_HELP = "A bundled task (seeded start state and success check), e.g. phone/book-flight."
SEED_HELP = "The task's seed: the same seed gives the same params, goal and start state."
ADB_PORT_HELP = "android: the adb server's port (default: $ANDROID_ADB_SERVER_PORT, else 5037)."
DISPLAY_HELP = ("desktop: the X display, e.g. :1, or 'new' to run on a private Xvfb "
                "(default: $DISPLAY).")
MODEL_HELP = (
    "PATH: a local Qwen2-VL checkpoint directory (cuda when available, else cpu); "
    "http(s)://HOST:PORT/v1: an OpenAI-compatible endpoint (vLLM, `serve`) with --served-model, "
    "its key in $VLAGENT_API_KEY; scripted: the "
    "task's own solution; replay:FILE: replies from a JSONL file or a trajectory directory; "
    "human: type each action."
)


def run(
    goal: str = typer.Argument(None, help="What the agent should do, e.g. \"book a flight\". "
                               "Optional with --task (the task's goal is used)."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    env: str = typer.Option("android", "--env", "-e", help=ENV_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    task: str = typer.Option(None, "--task", "-t", help=TASK_HELP),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    dialect: str = typer.Option(None, "--dialect", "-d", help=DIALECT_HELP),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Step budget; default: "
                                  "the task's own, else 30."),
    max_time: float = typer.Option(None, "--max-time", min=0.0,
                                   help="Time budget for the episode, in seconds; 0 or none "
                                   "given: no limit."),
    max_parse_errors: int = typer.Option(2, "--max-parse-errors", min=0, help="Unparsable "
                                         "replies in a row fed back to the model before the "
                                         "episode fails."),
    history_images: int = typer.Option(HistoryPolicy.images, "--history-images", min=0, help="Past screenshots "
                                       "kept as images in the prompt (at most); older steps "
                                       "become text."),
    history_block: int = typer.Option(HistoryPolicy.block, "--history-block", min=1, help="Past screenshots turn "
                                      "into text this many at a time, so the prompt only grows "
                                      "in between and a local model reuses its cached prefix "
                                      "(at most --history-images at a time)."),
    max_prompt_tokens: int = typer.Option(None, "--max-prompt-tokens", min=1, help="Drop past "
                                          "screenshots, a block at a time, oldest first, until "
                                          "the prompt fits; "
                                          "a prompt over it without any ends the run (status "
                                          "limit). Needs a token count: a local model or "
                                          "--processor, whose context less --max-new-tokens "
                                          "bounds the budget anyway."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for trajectories."),
    max_pixels: int = typer.Option(None, "--max-pixels", min=1, help="The processor's "
                                   "resize budget per screenshot; default: the checkpoint's "
                                   "(--model PATH or --processor), else 12845056 (1280*28*28 = "
                                   "1003520 is a common, faster choice)."),
    min_pixels: int = typer.Option(None, "--min-pixels", min=1, help="Lower resize budget; "
                                   "default: the checkpoint's, else 3136."),
    url: str = typer.Option("about:blank", "--url", help="browser: the start page (kept in "
                            "meta.json, so replay starts there too)."),
    viewport: str = typer.Option("1280x800", "--viewport", help="browser: the page size "
                                 "WIDTHxHEIGHT in CSS pixels."),
    scale: float = typer.Option(1.0, "--scale", help="browser: the device scale factor; "
                                "screenshots are the viewport times this."),
    allow_domain: List[str] = typer.Option(None, "--allow-domain", help="browser: load only "
                                           "this domain and its subdomains (repeatable); other "
                                           "navigations are blocked and reported."),
    adb_port: int = typer.Option(None, "--adb-port", min=1, max=65535, help=ADB_PORT_HELP),
    display: str = typer.Option(None, "--display", help=DISPLAY_HELP),
    processor: str = typer.Option(None, "--processor", help="Count prompt tokens with this "
                                  "checkpoint's processor (for scripted/human/replay runs "
                                  "recorded as training data)."),
    max_new_tokens: int = max_new_tokens_option(),
    temperature: float = temperature_option(),
    repetition_penalty: float = repetition_penalty_option(),
    compile: bool = compile_option(FOR_A_CHECKPOINT),
    dtype: str = dtype_option(FOR_A_CHECKPOINT),
    served_model: str = typer.Option(None, "--served-model", help="With --model URL: the model "
                                     "name the endpoint serves."),
    max_screen_pixels: int = typer.Option(None, "--max-screen-pixels", min=1, help="End the "
                                          "run when a screenshot has more pixels than this."),
    secret: list[str] = secret_option(),
    yes: bool = typer.Option(False, "--yes", help="Allow sensitive actions without asking."),
    deny_sensitive: bool = typer.Option(False, "--deny-sensitive", help="Refuse sensitive "
                                        "actions; the model is told why."),
    gate_rules: Path = typer.Option(None, "--gate-rules", help="A JSON or TOML file of the "
                                    "rules that mark actions as sensitive (docs/safety.md)."),
) -> None:
    """Run an agent on GOAL, showing each step live; write the trajectory and its HTML view.

    Examples:

      agent_cli.py run "book a flight" --env android --device virtual --model scripted

      agent_cli.py run "turn on wifi" --env android --model /models/Qwen2-VL-7B-Instruct
    """
    from runtime.settings import RunError, RunSpec, parse_viewport

    if model is None:
        raise typer.BadParameter("choose the model: " + MODEL_HELP, param_hint="--model")
    if yes and deny_sensitive:
        raise typer.BadParameter("choose one of --yes and --deny-sensitive", param_hint="--yes")
    secrets = parse_secrets(secret)
    try:
        size = parse_viewport(viewport)
        refuse_without_checkpoint(model, dtype, compile)
        if max_prompt_tokens is not None and processor is None and not Path(model).is_dir():
            raise RunError("--max-prompt-tokens needs a token count, which only a checkpoint "
                           "has: give --model PATH or --processor PATH")
    except RunError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    spec = RunSpec(
        goal=goal, model=model, env=env, device=device, task=task, seed=seed, dialect=dialect,
        max_steps=max_steps, max_time_s=max_time or None, max_parse_errors=max_parse_errors,
        history_images=history_images, history_block=history_block,
        max_prompt_tokens=max_prompt_tokens, out=out,
        min_pixels=min_pixels, max_pixels=max_pixels,
        url=url, processor=processor, max_new_tokens=max_new_tokens, temperature=temperature,
        repetition_penalty=repetition_penalty,
        served_model=served_model, compile=compile, dtype=dtype,
        viewport=size, scale=scale, allowed_domains=tuple(allow_domain or ()), adb_port=adb_port,
        display=display,
        max_screen_pixels=max_screen_pixels, secrets=secrets, gate_rules=gate_rules,
        confirm="yes" if yes else "deny" if deny_sensitive else None,
    )
    run_and_report(spec)


def demo(
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for the trajectory."),
) -> None:
    """Book a flight on the virtual phone with the task's scripted solution.

    Starts the virtual phone, connects adb, runs `run "book a flight" --env android --device
    virtual --model scripted` with the live view, checks the booking in the Flights app's state,
    and prints the trajectory's HTML view.
    """
    from runtime.settings import RunSpec

    run_and_report(RunSpec(goal="book a flight", model="scripted", env="android", device="virtual",
                           out=out))


def run_and_report(spec: RunSpec, runner: Runner | None = None) -> None:
    """Run SPEC (with ``runner``, default ``runtime.episode.run``) with the live step view, print
    the outcome, and exit 0 on success, 1 on a failed episode (or one an unexpected error
    stopped), 2 on settings or a device that cannot make a run and 128 + the signal's number
    when one stopped it (130 on Ctrl-C, 143 on SIGTERM)."""
    import sys

    from agent.policies.base import PolicyError
    from cli.live_view import LiveView
    from envs.base import EnvError
    from runtime.episode import EpisodeCrashed, confirm_mode, run
    from runtime.settings import RunError
    from runtime.stop_signals import interrupted_status
    from tasks.registry import UnknownTask

    console = scrubbed_console(spec.secrets)
    # The human policy and the gate's questions read this terminal, so they get plain rows
    # instead of a live table.
    asks = sys.stdin.isatty() and spec.confirm is None and confirm_mode(spec) == "ask"
    live = spec.model != "human" and not asks
    try:
        outcome = (runner or run)(spec, console,
                                  lambda goal: LiveView(console, goal, live=live))
    except EpisodeCrashed as exc:  # not a setting: the run had started, and is kept
        print_error(spec.secrets, f"the episode stopped on an unexpected error: {exc}")
        print_path(console, "trajectory", exc.directory)
        print_path(console, "view", exc.view)
        raise typer.Exit(1) from None
    # OSError: a path that cannot be used (--out naming a file, a folder that cannot be made).
    except (RunError, UnknownTask, PolicyError, EnvError, ValueError, OSError) as exc:
        # On stderr, as every other usage error: `run ... > log` still shows why it stopped.
        print_error(spec.secrets, exc)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # before the loop started (it handles Ctrl-C itself)
        console.print("[red]interrupted[/]")
        raise typer.Exit(interrupted_status()) from None
    report(outcome, console)
    if outcome.result.status == "interrupted":
        raise typer.Exit(interrupted_status())
    raise typer.Exit(0 if outcome.succeeded else 1)


def report(outcome: RunOutcome, console: Console) -> None:
    result = outcome.result
    style = "green" if result.status in ("success", "answered") else "red"
    # The reasons quote the model's and the task's text: escaped, never read as markup.
    console.print(f"status: [{style}]{result.status}[/] after {result.steps} step(s): "
                  f"{literal(result.reason)}", soft_wrap=True)
    if result.check is not None:
        mark = "[green]passed[/]" if result.check.success else "[red]failed[/]"
        console.print(f"check: {mark} ({literal(result.check.reason)})", soft_wrap=True)
    if outcome.diverged is not None:
        console.print(f"[red]diverged[/]: {literal(outcome.diverged)}", soft_wrap=True)
    print_path(console, "trajectory", outcome.directory)
    print_path(console, "view", outcome.view)
