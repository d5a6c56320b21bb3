"""``bench``: run a suite's tasks x seeds as independent episodes (in processes or on Ray), resume
an interrupted run, and write results.jsonl, summary.json and the reports; ``--compare A B``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cli.model_options import (
    DIALECT_HELP,
    FOR_A_CHECKPOINT,
    compile_option,
    dtype_option,
    max_new_tokens_option,
    refuse_without_checkpoint,
    temperature_option,
)
from cli.scrubbed import print_error, print_path, scrubbed_console
from cli.secret_option import parse_secrets, secret_option
from core.terminal import literal
from core.text import one_line

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from runtime.bench.execute import JobRunner
    from runtime.bench.summary import Summary


def default_runner() -> "JobRunner":
    """The bundled tasks on the real envs (tests replace this with fakes)."""
    from runtime.bench.execute import JobRunner

    return JobRunner()


def bench(
    suite: str = typer.Option(None, "--suite", "-s", help="The suite to run: phone, miniwob, "
                              "desktop (the part of a task's name before '/')."),
    tasks: list[str] = typer.Option(None, "--tasks", help="Only the tasks whose names match "
                                    "this glob, e.g. 'phone/*flight*'; repeat it for a task "
                                    "matching any of several."),
    tags: list[str] = typer.Option(None, "--tag", help="Only the tasks with this tag, e.g. "
                                   "scripted (the MiniWoB++ tasks with a solution); repeat it "
                                   "to require several."),
    episodes: int = typer.Option(1, "--episodes", "-n", min=1, help="Seeds per task."),
    seed: int = typer.Option(0, "--seed", min=0,
                             help="The first seed: episodes use seed..seed+N-1."),
    model: str = typer.Option("scripted", "--model", "-m", help="PATH (a local Qwen2-VL "
                              "checkpoint), scripted (each task's solution) or replay:FILE."),
    dialect: str = typer.Option(None, "--dialect", "-d", help=DIALECT_HELP),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Step budget per episode; "
                                  "default: each task's own."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Episodes at once, each in its "
                                "own process with its own env; a checkpoint is loaded once "
                                "and serves them all, their decode steps batched."),
    out: Path = typer.Option(None, "--out", "-o", help="The run's folder; a run interrupted "
                             "there resumes and skips its finished episodes. Default: "
                             "runs/bench-SUITE-MODEL."),
    shard: str = typer.Option("1/1", "--shard", help="i/n: run only the i-th of n "
                              "deterministic slices of the jobs."),
    executor: str = typer.Option("local", "--executor", help="local (processes on this "
                                 "machine) or ray (Ray tasks on a cluster)."),
    ray_address: str = typer.Option(None, "--ray-address", help="An existing Ray cluster, e.g. "
                                    "auto or ray://HEAD:10001; default: a local one."),
    max_new_tokens: int = max_new_tokens_option(FOR_A_CHECKPOINT),
    temperature: float = temperature_option(FOR_A_CHECKPOINT),
    max_pixels: int = typer.Option(None, "--max-pixels", min=1, help="--model PATH: the "
                                   "processor's resize budget per screenshot (default: the "
                                   "checkpoint's; 1280*28*28 = 1003520 is a common, faster one)."),
    dtype: str = dtype_option(FOR_A_CHECKPOINT),
    compile: bool = compile_option(FOR_A_CHECKPOINT, batches=True),
    device: str = typer.Option("virtual", "--device", help="android: 'virtual' starts a "
                               "virtual phone per episode."),
    compare: Optional[tuple[Path, Path]] = typer.Option(
        None, "--compare", help="Print runs A and B side by side, with the episodes whose "
        "outcome changed; runs nothing."),
    merge: list[Path] = typer.Option(None, "--merge", help="Merge these runs' results (say, "
                                     "the shards of a suite) into --out, with summary and "
                                     "reports; runs nothing. Repeat for each run."),
    secret: list[str] = secret_option(),
) -> None:
    """Run benchmark episodes: every task of SUITE (or --tasks GLOB) with N seeds.

    Examples:

      agent_cli.py bench --suite phone --model scripted --workers 2 --out runs/bench-phone

      agent_cli.py bench --suite miniwob --tag scripted --model scripted

      agent_cli.py bench --compare runs/bench-a runs/bench-b
    """


    from runtime.settings import RunError
    from runtime.stop_signals import interrupted_status, sigterm_interrupts

    secrets = parse_secrets(secret)
    console = scrubbed_console(secrets)
    try:
        if compare:
            _print_comparison(console, *compare)
            return
        if merge:
            _merge(console, merge, out)
            return
        generation = dict(max_new_tokens=max_new_tokens, temperature=temperature,
                          max_pixels=max_pixels, dtype=dtype, compile=compile)
        # SIGTERM stops the workers' episodes as Ctrl-C does: each trajectory is finalized.
        with sigterm_interrupts():
            summary = _run(console, suite, tuple(tasks or ()), episodes, seed, model, dialect,
                           max_steps, workers, out, shard, executor, ray_address, device,
                           tags=tuple(tags or ()), secrets=secrets, generation=generation)
    except (RunError, OSError) as exc:  # OSError: an --out that cannot be a folder
        print_error(secrets, exc)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: run the same command again to resume")
        raise typer.Exit(interrupted_status()) from None
    # A task the agent failed is a result; an episode that did not run to one is not, and a
    # script or CI job that goes on from the bench must not take it for a finished one.
    unfinished = summary.overall.errors + summary.planned - summary.overall.episodes
    if unfinished:
        print_error(secrets, f"{unfinished} of {summary.planned} episodes ended in a runtime "
                             "error or have no result (results.jsonl says why); run the same "
                             "command again to run them again")
        raise typer.Exit(1)


def _run(console: "Console", suite, tasks, episodes, seed, model, dialect, max_steps, workers,
         out, shard, executor, ray_address, device, tags: tuple[str, ...],
         secrets: dict[str, str], generation: dict) -> "Summary":
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from runtime.bench.fingerprint import model_fingerprint
    from runtime.bench.plan import BenchSettings, parse_shard
    from runtime.bench.runner import run_bench
    from runtime.settings import RunError

    if not suite:
        from tasks.registry import suites

        raise RunError(f"choose a suite with --suite ({', '.join(suites())})")
    if executor not in ("local", "ray"):
        raise RunError(f"unknown --executor {executor!r}; choose local or ray")
    if model == "human" or not (model == "scripted" or model.startswith("replay:")
                                or Path(model).is_dir()):
        raise RunError(f"--model {model!r} cannot run a bench; give PATH (a local Qwen2-VL "
                       f"checkpoint), scripted or replay:FILE")
    _check_model_and_dialect(model, dialect)
    settings = BenchSettings(
        suite=suite, tasks=tasks, tags=tags, episodes=episodes, seed=seed, model=model,
        dialect=dialect, max_steps=max_steps, device=device, shard=parse_shard(shard),
        model_fingerprint=model_fingerprint(model), **_checked_generation(model, **generation),
    )
    out = out or Path("runs") / f"bench-{suite}-{Path(model).name or model}"
    tally = {"done": 0, "success": 0, "error": 0}

    def rate() -> str:
        done = tally["done"]
        share = f"{tally['success'] / done * 100:.0f}%" if done else "-"
        return f"success {share} ({tally['success']}/{done}), errors {tally['error']}"

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), console=console,
                        # A log gets the lines of on_result, not the bar's last state at the end.
                        disable=not console.is_terminal)
    bar = None

    def on_start(total: int, earlier) -> None:
        nonlocal bar
        for r in earlier:
            tally["done"] += 1
            tally[r.outcome] = tally.get(r.outcome, 0) + 1
        if earlier:
            console.print(f"resuming {literal(str(out))}: {len(earlier)} of {total} episodes "
                          "already done", soft_wrap=True)
        bar = progress.add_task(suite, total=total, completed=len(earlier), rate=rate())

    def on_result(result) -> None:
        tally["done"] += 1
        tally[result.outcome] = tally.get(result.outcome, 0) + 1
        if not console.is_terminal:  # no bar is drawn there (a log, CI): a line per episode
            wall = f", {result.wall_s:.1f} s" if result.wall_s is not None else ""
            # One line however many the error holds (a launch's call log, adb's stderr): the
            # whole text is in results.jsonl.
            said = f": {one_line(result.error or '', 200)}" if result.outcome == "error" else ""
            console.print(f"{tally['done']}/{progress.tasks[0].total:g} {result.key}: "
                          f"{result.outcome}{said} ({result.steps} steps{wall}) | {rate()}",
                          markup=False, highlight=False, soft_wrap=True)
        elif result.outcome == "error":
            progress.console.print(f"[red]error[/] {literal(f'{result.key}: {result.error}')}")
        progress.update(bar, advance=1, rate=rate())

    with progress:
        # The secrets travel with the runner to each worker, not in the run's stored settings.
        runner = dataclasses.replace(default_runner(), secrets=secrets)
        outcome = run_bench(settings, out, runner=runner, workers=workers,
                            executor=executor, ray_address=ray_address,
                            on_start=on_start, on_result=on_result)
    _print_summary(console, outcome.summary)
    print_path(console, "results", out / "results.jsonl")
    print_path(console, "report", out / "report.html")
    return outcome.summary


def _check_model_and_dialect(model: str, dialect: str | None) -> None:
    """Refuse, before any episode runs or the settings are stored, a dialect that does not exist,
    a replay source that cannot be read and a checkpoint that cannot load: every episode would
    end in the same error."""
    from agent.policies.base import PolicyError
    from agent.policies.replay import read_responses
    from runtime.build import resolve_dialect
    from runtime.checkpoint import check_checkpoint
    from runtime.settings import RunError, RunSpec

    if model.startswith("replay:"):
        try:
            read_responses(model[len("replay:"):])
        except PolicyError as exc:
            raise RunError(str(exc)) from None
    elif Path(model).is_dir():
        check_checkpoint(model)
        from model import Qwen2VL

        try:  # its tensors' names and shapes too, read from the headers: no weight is loaded
            Qwen2VL.check_pretrained(model)
        except (ValueError, OSError) as exc:
            raise RunError(f"{model} cannot load: {exc}") from None
    resolve_dialect(RunSpec(goal=None, model=model, dialect=dialect))


def _checked_generation(model: str, *, dtype: str | None, compile: bool, **rest) -> dict:
    """The generation settings, refused before any episode starts where they cannot apply
    (a --max-pixels under the checkpoint's min_pixels, say): each episode would end in the same
    error."""
    from runtime.build import checked_dtype, resize_budget
    from runtime.settings import RunError, RunSpec

    refuse_without_checkpoint(model, dtype, compile)
    if rest["temperature"] and not Path(model).is_dir():
        raise RunError("--temperature sets how a checkpoint decodes; give --model PATH")
    resize_budget(RunSpec(goal=None, model=model, max_pixels=rest.get("max_pixels")))
    return dict(rest, dtype=checked_dtype(dtype), compile=compile)


def _merge(console: "Console", sources: list[Path], out: Path | None) -> None:
    from runtime.bench.merge import merge
    from runtime.settings import RunError

    if out is None:
        raise RunError("--merge writes the merged run to --out DIR; give one")
    _print_summary(console, merge(sources, out, default_runner().catalog))
    print_path(console, "report", out / "report.html")


def _print_uncut(console: "Console", title: str, columns: tuple[str, ...],
                 rows: "list[tuple[str | Text, ...]]") -> None:
    """A table as wide as its cells, even past the console's width: a log is 80 columns wide
    (not a terminal), where rich would cut a task to "desktop/e…", which names no task, or drop
    whole columns. Cells and the title are shown as written, never read as markup (a folder
    named "[old]")."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(c) if isinstance(c, str) else c for c in row))
    width = console.width
    console.width = max(width, Measurement.get(console, console.options.update_width(1 << 20),
                                               table).maximum)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def _print_summary(console: "Console", summary: "Summary") -> None:
    rows = [(name, str(r.episodes), f"{r.success_rate * 100:.0f}%", f"{r.mean_reward:g}",
             str(r.failures), str(r.errors), f"{r.mean_steps:g}")
            for name, r in summary.tasks.items()]
    _print_uncut(console, "success per task", ("task", "episodes", "success", "mean\nreward",
                                               "failures", "errors", "mean\nsteps"), rows)
    o = summary.overall
    console.print(f"overall: {o.successes}/{o.episodes} succeeded "
                  f"({o.success_rate * 100:.0f}%), {o.errors} runtime errors")
    if summary.planned > o.episodes:
        console.print(f"[yellow]unfinished[/]: {summary.planned - o.episodes} of "
                      f"{summary.planned} planned episodes have no result")


def _print_comparison(console: "Console", a: Path, b: Path) -> None:
    from rich.text import Text

    from runtime.bench.compare import compare

    result = compare(a, b)

    def cell(rate) -> str:
        return f"{rate.success_rate * 100:.0f}% ({rate.successes}/{rate.episodes})" if rate \
            else "-"

    rows: list[tuple[str | Text, ...]] = [
        (name, cell(ra), cell(rb), "" if ra is None or rb is None else
         f"{(rb.success_rate - ra.success_rate) * 100:+.0f} pts")
        for name, (ra, rb) in result.tasks.items()]
    ra, rb = result.overall
    rows.append((Text("overall", style="bold"), cell(ra), cell(rb),
                 f"{(rb.success_rate - ra.success_rate) * 100:+.0f} pts"))
    _print_uncut(console, f"A: {a}   B: {b}", ("task", "A success", "B success", "change"), rows)
    if not result.shared:
        # Other seeds (or tasks): no episode ran in both, so none can be said to have changed.
        console.print("[yellow]the runs share no episode[/] (task@seed): run both with the "
                      "same --seed and --episodes to see which outcomes changed")
        return
    if any(result.only):
        console.print(f"[yellow]compared on the {result.shared} episodes both runs hold[/] "
                      f"(task@seed); left out: {result.only[0]} only in A, "
                      f"{result.only[1]} only in B")
    if not result.changed:
        console.print(f"no episode changed its outcome ({result.shared} in both runs)")
        return
    console.print(f"{len(result.changed)} episode(s) changed their outcome:")
    for key, was, now in result.changed:
        console.print(f"  {literal(key)}: {was} -> {now}", soft_wrap=True)
