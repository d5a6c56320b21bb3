"""``record``: demonstrate a task on a local page that shows the live screen; the trajectory is
recorded like a model's run, in the chosen dialect's text."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.run_cmd import ADB_PORT_HELP, DEVICE_HELP, DISPLAY_HELP, ENV_HELP, SEED_HELP, TASK_HELP
from cli.secret_option import parse_secrets, secret_option


def record(
    goal: str = typer.Argument(None, help="What to demonstrate. Optional with --task (the "
                               "task's goal is used)."),
    env: str = typer.Option("android", "--env", "-e", help=ENV_HELP),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    task: str = typer.Option(None, "--task", "-t", help=TASK_HELP),
    seed: int = typer.Option(0, "--seed", min=0, help=SEED_HELP),
    dialect: str = typer.Option(None, "--dialect", "-d", help="The text each action is recorded "
                                "in: qwen2vl (default), qwen25vl, uitars or uitars15."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for the trajectory."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="The page's port on "
                             "127.0.0.1 (0: a free one; the URL is printed)."),
    max_steps: int = typer.Option(50, "--max-steps", min=1, help="Step budget."),
    processor: str = typer.Option(None, "--processor", help="Count prompt tokens with this "
                                  "checkpoint's processor (for SFT statistics)."),
    max_pixels: int = typer.Option(None, "--max-pixels", min=1, help="The resize budget "
                                   "that qwen25vl's resized-pixel coordinates refer to; "
                                   "default: --processor's checkpoint's, else 12845056."),
    url: str = typer.Option("about:blank", "--url", help="browser: the start page."),
    adb_port: int = typer.Option(None, "--adb-port", min=1, max=65535, help=ADB_PORT_HELP),
    display: str = typer.Option(None, "--display", help=DISPLAY_HELP),
    secret: list[str] = secret_option(),
) -> None:
    """Record a demonstration: serve a page on 127.0.0.1 that shows the live screen and sends
    your clicks, drags, wheel, keys, text and thoughts to the device as actions.

    Each action is recorded in the dialect's text, as a model would write it; "Done" ends the
    episode (and runs the task's check). Exit status as for `run`. A secret (a password) is
    typed as <secret:NAME> with --secret NAME, and recorded so; text typed as it is into a
    password field is refused.

    Example: agent_cli.py record --env android --device virtual --task phone/write-note
    """
    from cli.run_cmd import run_and_report
    from runtime.record import record as record_episode
    from runtime.settings import RunSpec

    spec = RunSpec(
        goal=goal, model="demonstration", env=env, device=device, task=task, seed=seed,
        dialect=dialect, out=out, max_steps=max_steps, processor=processor,
        max_pixels=max_pixels, url=url, adb_port=adb_port, display=display,
        secrets=parse_secrets(secret),
        # The person chooses every action on the page: the gate asks no one again.
        confirm="yes",
    )
    run_and_report(spec, lambda spec, console, observer: record_episode(spec, console, observer,
                                                                        port=port))
