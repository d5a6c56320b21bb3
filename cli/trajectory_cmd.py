"""``view``, ``export`` and ``replay``: look at, train on, and re-run recorded trajectories."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def view(
    directory: Path = typer.Argument(..., help="A trajectory directory (runs/...)."),
    out: Path = typer.Option(None, "--out", "-o", help="The HTML file to write. Default: "
                             "view.html inside the trajectory."),
) -> None:
    """Write a self-contained HTML page of a trajectory: each screenshot with its action drawn
    on it, the thought, the raw reply and the timings. It opens from anywhere."""
    from trajectories.reader import TrajectoryError
    from trajectories.viewer import write_view

    try:
        path = write_view(directory, out)
    except (TrajectoryError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


def export(
    directories: List[Path] = typer.Argument(..., help="Trajectory directories."),
    format: str = typer.Option("qwen2vl", "--format", "-f", help="qwen2vl: chat messages with "
                               "{'type': 'image', 'image': PATH} parts (qwen-vl-utils); "
                               "llamafactory: messages with <image> placeholders and images."),
    granularity: str = typer.Option("step", "--granularity", "-g", help="step: one sample per "
                                    "step; episode: one per trajectory (its final prompt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: JSON Lines, or a JSON array "
                             "when it ends in .json."),
    status: List[str] = typer.Option(None, "--status", help="Keep only episodes that ended so "
                                     "(repeatable), e.g. --status success."),
    relative: bool = typer.Option(False, "--relative", help="Image paths relative to the "
                                  "output file's folder instead of absolute."),
) -> None:
    """Export trajectories as SFT data for Qwen2-VL fine-tuning tools."""
    from trajectories.export import ExportError
    from trajectories.export import export as run_export
    from trajectories.reader import TrajectoryError

    try:
        summary = run_export(directories, format, granularity, out, status or None, relative)
    except (ExportError, TrajectoryError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{summary.samples} sample(s) from {summary.episodes} episode(s) -> {out}"
               + (f" ({summary.skipped_steps} unparsed step(s) left out)"
                  if summary.skipped_steps else ""))


def replay(
    directory: Path = typer.Argument(..., help="The trajectory to repeat."),
    device: str = typer.Option(None, "--device", help="android: an adb serial or 'virtual'. "
                               "Default: a virtual phone when the trajectory was recorded on "
                               "one."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for the new trajectory."),
) -> None:
    """Re-run a trajectory's recorded replies on a fresh env (same goal, task, env and dialect).

    The same as `run --model replay:DIR`; with a task, its success check runs again at the end.
    """
    from cli.run_cmd import run_and_report
    from runtime.settings import RunSpec
    from trajectories.reader import TrajectoryError, load

    try:
        trajectory = load(directory)
    except TrajectoryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    meta = trajectory.meta
    recorded_device = getattr(meta, "device", None)
    run_and_report(RunSpec(
        goal=meta.goal, model=f"replay:{directory}", env=meta.env, task=meta.task,
        seed=getattr(meta, "seed", 0), params=getattr(meta, "params", None),
        device=device or ("virtual" if recorded_device == "virtual" else None),
        dialect=meta.dialect, min_pixels=meta.min_pixels, max_pixels=meta.max_pixels,
        # steps.jsonl, not meta.json: a killed run's meta was never finished.
        max_steps=max(len(trajectory.steps), 1), out=out,
    ))
