"""``view``, ``export`` and ``replay``: look at, train on, and re-run recorded trajectories."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from cli.run_cmd import ADB_PORT_HELP
from cli.secret_option import parse_secrets, secret_option


def view(
    directory: Path = typer.Argument(..., help="A trajectory directory (runs/...)."),
    out: Path = typer.Option(None, "--out", "-o", help="The HTML file to write. Default: "
                             "view.html inside the trajectory."),
    gif: Path = typer.Option(None, "--gif", help="Also write an animated GIF of the episode, "
                             "each screenshot with its action drawn on it."),
) -> None:
    """Write a self-contained HTML page of a trajectory: each screenshot with its action drawn
    on it, the thought, the raw reply and the timings. It opens from anywhere."""
    from runtime.stop_signals import interrupted_status, sigterm_interrupts
    from trajectories.animation import write_gif
    from trajectories.reader import TrajectoryError, check_outside
    from trajectories.viewer import write_view

    try:
        if gif is not None:  # before anything is written
            check_outside(gif, directory, "--gif")
            if gif.suffix.lower() != ".gif":
                raise ValueError(f"--gif {gif} must name a .gif file")
        with sigterm_interrupts():  # a file half written goes, as on Ctrl-C
            path = write_view(directory, out, track=_bar)
            animation = write_gif(directory, gif, track=_bar) if gif is not None else None
    except (TrajectoryError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # 130 on Ctrl-C, 143 on SIGTERM, as a shell reports them
        typer.echo("interrupted", err=True)
        raise typer.Exit(interrupted_status()) from None
    typer.echo(str(path))
    if animation is not None:
        typer.echo(str(animation))


def _bar(items, label: str):
    """``items``, with a bar on stderr while they are worked through, where stderr is a
    terminal (stdout keeps only the paths and counts the commands print; a log gets neither)."""
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    if not console.is_terminal:
        return items
    return track(items, description=label, console=console, transient=True)


def export(
    directories: List[Path] = typer.Argument(..., help="Trajectory directories."),
    format: str = typer.Option("qwen2vl", "--format", "-f", help="qwen2vl: chat messages with "
                               "{'type': 'image', 'image': PATH} parts and a loss flag per "
                               "assistant message; llamafactory: ShareGPT messages with <image> "
                               "placeholders and images (docs/export.md)."),
    granularity: str = typer.Option("step", "--granularity", "-g", help="step: one sample per "
                                    "step; episode: one per trajectory (its final prompt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: JSON Lines, or a JSON array "
                             "when it ends in .json."),
    status: List[str] = typer.Option(None, "--status", help="Keep episodes that ended so "
                                     "(repeatable; default success). A claimed success or an "
                                     "answer that a task check judged is success or failure, "
                                     "so answered is an answer no check judged. E.g. --status "
                                     "success --status max_steps; --status all keeps every "
                                     "episode."),
    relative: bool = typer.Option(False, "--relative", help="Image paths relative to the "
                                  "output file's folder instead of absolute."),
    strict: bool = typer.Option(False, "--strict", help="Fail on a trajectory that cannot be "
                                "read, instead of leaving it out with a warning."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop samples identical to an earlier "
                                "one (same text and image bytes)."),
    stats: bool = typer.Option(False, "--stats", help="Print the samples, images and tokens per "
                               "sample."),
) -> None:
    """Export trajectories as SFT data for Qwen2-VL fine-tuning tools; only the model's replies
    are trained (docs/export.md)."""
    from runtime.stop_signals import interrupted_status, sigterm_interrupts
    from trajectories.export import ExportError
    from trajectories.export import export as run_export
    from trajectories.reader import TrajectoryError

    try:
        with sigterm_interrupts():  # a file half written goes, as on Ctrl-C
            summary = run_export(directories, format, granularity, out, status or ["success"],
                                 relative, strict=strict, dedupe=dedupe, track=_bar)
    except (ExportError, TrajectoryError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # 130 on Ctrl-C, 143 on SIGTERM, as a shell reports them
        typer.echo("interrupted", err=True)
        raise typer.Exit(interrupted_status()) from None
    for why in summary.skipped:
        typer.echo(f"warning: left out {why}", err=True)
    notes = [f"{n} {what}" for n, what in (
        (summary.skipped_steps, "step(s) whose reply cannot be trained left out"),
        (summary.duplicates, "duplicate sample(s) dropped"),
        (summary.untrainable_episodes, "episode(s) with a reply that cannot be trained left "
                                       "out (LLaMA-Factory would train it)"),
        (len(summary.skipped), "unreadable trajectory(ies) left out")) if n]
    typer.echo(f"{summary.samples} sample(s) from {summary.episodes} episode(s) -> {out}"
               + (f" ({'; '.join(notes)})" if notes else ""))
    if format == "llamafactory":
        _llamafactory_pixels(summary.pixel_budgets, summary.largest_image)
    if stats:
        typer.echo(f"samples: {summary.samples}")
        typer.echo(f"images: {summary.images} ({summary.images / summary.samples:.1f} per sample)")
        tokens = summary.tokens
        if tokens:
            typer.echo(f"tokens per sample: min {min(tokens)}, mean "
                       f"{sum(tokens) / len(tokens):.0f}, max {max(tokens)}"
                       + (f" ({summary.samples - len(tokens)} sample(s) without a recorded "
                          "count)" if len(tokens) < summary.samples else ""))
        else:
            typer.echo("tokens per sample: unknown (the policy recorded no token counts; "
                       "record with a local model, or run with --processor CHECKPOINT)")


def _llamafactory_pixels(budgets: set[tuple[int, int]], largest: int) -> None:
    """The settings under which LLaMA-Factory gives the model the screenshots it saw: by default
    it shrinks each to 768*768 pixels before the processor's own resize, which changes the image
    and, for qwen25vl and uitars15, what the replies' resized-pixel coordinates point at."""
    if len(budgets) > 1:
        listed = ", ".join(f"{low}/{high}" for low, high in sorted(budgets))
        typer.echo(f"warning: the screenshots were recorded at {len(budgets)} resize budgets "
                   f"(min_pixels/max_pixels {listed}), and LLaMA-Factory applies one to a whole "
                   "dataset: export each budget's trajectories on its own, or use --format "
                   "qwen2vl (a budget per image)", err=True)
        return
    ((low, high),) = budgets
    typer.echo(f"LLaMA-Factory: train with image_max_pixels: {largest} (or more) so that it "
               f"does not shrink the screenshots, and the checkpoint's processor set to "
               f"min_pixels {low} and max_pixels {high} as recorded (docs/export.md)")


def replay(
    directory: Path = typer.Argument(..., help="The trajectory to repeat."),
    device: str = typer.Option(None, "--device", help="android: an adb serial or 'virtual'. "
                               "Default: a virtual phone when the trajectory was recorded on "
                               "one; one recorded on a real phone needs it named."),
    display: str = typer.Option(None, "--display", help="desktop: an X display (:1) or 'new' "
                                "(a private Xvfb). Default: a private Xvfb when the trajectory "
                                "was recorded on one; one recorded on a real display needs it "
                                "named."),
    adb_port: int = typer.Option(None, "--adb-port", min=1, max=65535, help=ADB_PORT_HELP),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for the new trajectory."),
    yes: bool = typer.Option(False, "--yes", help="Allow sensitive actions without asking."),
    secret: list[str] = secret_option(),
    processor: str = typer.Option(None, "--processor", help="A checkpoint folder whose "
                                   "tokenizer counts the prompts, so a run's token budget holds "
                                   "again (default: the recorded model's folder, where it is "
                                   "one here)."),
) -> None:
    """Re-run a trajectory's recorded replies on a fresh env (same goal, task, env and dialect;
    a goal that names a <secret:NAME> needs its --secret again: no value was recorded).

    `run GOAL --model replay:DIR` takes the replies alone; here the goal, task, env, browser
    settings, history layout, safety gate rules and parse-error limit are the recorded ones
    too. With a task, its success check runs again at the end. A step that goes otherwise than
    recorded (refused by the safety gate, failed, or done where it had failed) is named, and the
    exit status is 1.

    A trajectory recorded on a real phone or display is repeated only on one named with
    --device or --display: its taps and typing would otherwise land on whatever phone is
    attached, or on the desktop in $DISPLAY.
    """
    import dataclasses

    from rich.console import Console

    from cli.run_cmd import run_and_report
    from runtime.episode import ObserverFactory, RunOutcome, run
    from runtime.settings import RunSpec
    from trajectories.divergence import first_divergence
    from trajectories.reader import TrajectoryError, load

    try:
        trajectory = load(directory)
    except TrajectoryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    meta = trajectory.meta
    recorded_device, recorded_display = meta.device, meta.display
    # A virtual phone, a private Xvfb and the browser are fresh for the replay; a person's
    # phone or display gets the recorded actions only when named.
    if meta.env == "android" and device is None and recorded_device != "virtual":
        _refuse_unnamed(directory, "phone",
                        "--device SERIAL (a phone of yours) or --device virtual")
    if meta.env == "desktop" and display is None and recorded_display != "new":
        _refuse_unnamed(directory, "display",
                        "--display :N (a display of yours) or --display new (a private Xvfb)")
    browser = {}  # the recorded browser settings: start URL, viewport, scale, allowed domains
    if meta.env == "browser":
        browser = {"url": meta.url or "about:blank",
                   "viewport": tuple(meta.viewport or (1280, 800)),
                   "scale": meta.scale or 1.0,
                   "allowed_domains": tuple(meta.allowed_domains or ())}
    # The loop's recorded settings, so each replayed prompt and the parse-error limit are the
    # run's (a recording made before they were kept gets the defaults).
    loop = {} if meta.max_parse_errors is None else {"max_parse_errors": meta.max_parse_errors}
    if meta.history is not None:
        loop |= {"history_images": meta.history["images"],
                 "history_block": meta.history["block"],
                 "max_prompt_tokens": meta.history["max_tokens"]}
    budget = loop.get("max_prompt_tokens")
    if budget is not None and processor is None:
        if Path(meta.model).is_dir():
            processor = meta.model  # the run's own checkpoint counts as it did
        else:
            typer.echo(f"note: the run kept its prompts within {budget} tokens, which the "
                       f"replay cannot count without --processor CHECKPOINT: its prompts may "
                       f"keep screenshots the run dropped", err=True)
    if meta.gate_rules is None:
        typer.echo("note: the run's safety gate rules were not recorded: the replay applies the "
                   "default rules", err=True)
    def replayed(spec: RunSpec, console: Console, observer: ObserverFactory) -> RunOutcome:
        outcome = run(spec, console, observer)
        return dataclasses.replace(outcome, diverged=first_divergence(
            trajectory.steps, load(outcome.directory).steps))

    run_and_report(RunSpec(
        goal=meta.goal, model=f"replay:{directory}", env=meta.env, task=meta.task,
        seed=meta.seed or 0, params=meta.params,
        device=device or recorded_device,  # unnamed, only a virtual phone gets here
        adb_port=adb_port,
        display=display or recorded_display,
        dialect=meta.dialect, min_pixels=meta.min_pixels, max_pixels=meta.max_pixels,
        # steps.jsonl, not meta.json: a killed run's meta was never finished.
        max_steps=max(len(trajectory.steps), 1), out=out, **browser,
        confirm="yes" if yes else None, gate_rules=meta.gate_rules,
        secrets=parse_secrets(secret), **loop,
        processor=processor,
    ), replayed)


def _refuse_unnamed(directory: Path, what: str, options: str) -> None:
    typer.echo(f"error: {directory} was recorded on a real {what}, and replay repeats its "
               f"actions: name where with {options}", err=True)
    raise typer.Exit(2)
