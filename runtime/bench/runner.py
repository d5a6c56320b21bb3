"""Run a bench: plan the jobs, skip those already in --out, execute the rest (in this process, a
process pool, or Ray tasks), append each result as it arrives, then write the summary and reports.

Every executor yields results in the order they finish and the same code merges them, so
``--workers 2`` and ``--executor ray`` give the same results.jsonl lines (up to order and timings)
as ``--workers 1``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from core.files import replace_text
from runtime.bench.catalog import Catalog
from runtime.bench.execute import JobRunner, on_real_phone
from runtime.bench.jobs import EpisodeJob, EpisodeResult
from runtime.bench.plan import (
    BenchSettings,
    check_runnable,
    differing_fields,
    matching_tasks,
    plan_jobs,
)
from runtime.bench.report import write_reports
from runtime.bench.results import RESULTS_FILE, ResultsWriter, read_results
from runtime.bench.summary import Summary
from runtime.settings import RunError, make_out_folder

if TYPE_CHECKING:
    from ctypes import c_byte

SETTINGS_FILE = "bench.json"
Executor = Literal["local", "ray"]


@dataclass
class BenchRun:
    out: Path
    jobs: list[EpisodeJob]
    skipped: int  # finished in an earlier, interrupted run
    results: list[EpisodeResult]
    summary: Summary


def prepare(settings: BenchSettings, out: Path, runner: JobRunner) -> list[EpisodeJob]:
    """All the run's jobs; records the settings in ``out`` (or refuses to resume a run whose
    settings differ)."""
    jobs = plan_jobs(settings, runner.catalog)
    check_runnable(settings, runner.catalog)
    make_out_folder(out, "a bench writes a folder (its results, trajectories and reports)")
    stored = out / SETTINGS_FILE
    if stored.is_file():
        changed = differing_fields(_read_settings(stored), settings)
        if changed == ["model_fingerprint"]:
            raise RunError(f"{out} holds a run of {settings.model} whose files have changed "
                           f"since it started (retrained or edited in place): its results and "
                           f"the new ones would be two models' under one name; resume with the "
                           f"files it started with, or choose another --out")
        if changed:
            raise RunError(f"{out} holds a run with other settings ({', '.join(changed)}); "
                           f"resume it with the same ones or choose another --out")
    elif (out / RESULTS_FILE).exists():
        # Results no run of these settings wrote (a merge's, or another tool's): a resume
        # would count them as this run's episodes.
        raise RunError(f"{out} holds results but no {SETTINGS_FILE}, so they are not a bench "
                       "run's to resume (a --merge writes such a folder); choose another --out")
    else:
        replace_text(stored, settings.model_dump_json(indent=2), durable=True)
    return jobs


def already_done(jobs: list[EpisodeJob], out: Path) -> list[EpisodeResult]:
    """The results in ``out`` that are outcomes of ``jobs``. A runtime error (a lost device, a
    dead browser, a failed endpoint) is not an outcome of the task: a resume runs that episode
    again, and its new line replaces the error."""
    keys = {job.key for job in jobs}
    return [r for r in read_results(out) if r.outcome != "error" and r.key in keys]


def run_bench(
    settings: BenchSettings,
    out: Path,
    *,
    runner: JobRunner | None = None,
    workers: int = 1,
    executor: Executor = "local",
    ray_address: str | None = None,
    on_start: Callable[[int, list[EpisodeResult]], None] | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
    limit: int | None = None,
) -> BenchRun:
    """Run what is left of the bench in ``out``. ``limit`` stops after that many new episodes
    (as if interrupted there)."""
    runner = runner or JobRunner()
    out = Path(out)
    if workers > 1 and (executor == "local" or not ray_address):
        _one_episode_per_phone(settings, runner.catalog)
    if executor == "ray" and ray_address:
        _check_reachable(ray_address)  # before the run's folder is written
    jobs = prepare(settings, out, runner)
    # The writer holds the run's lock from here on: a second bench on this --out (the same
    # command again while this one runs) is refused before it reads what is done.
    with ResultsWriter(out / RESULTS_FILE) as writer:
        done = already_done(jobs, out)
        finished = {r.key for r in done}
        todo = [job for job in jobs if job.key not in finished]
        skipped = len(jobs) - len(todo)
        if on_start is not None:
            on_start(len(jobs), done)
        if limit is not None:
            todo = todo[:limit]
        for result in execute(todo, out, runner, workers, executor, ray_address):
            writer.append(result)
            if on_result is not None:
                on_result(result)
        writer.drop_superseded()
        return finish(out, jobs, skipped)


def _one_episode_per_phone(settings: BenchSettings, catalog: Catalog) -> None:
    """Refuse parallel episodes on this machine's one real phone (``--device SERIAL``): each
    would tap, type and read the screen in the middle of the others'."""
    if any(on_real_phone(cls.env, settings.device)
           for cls in matching_tasks(settings, catalog)):
        raise RunError(f"--device {settings.device} is one phone, which parallel episodes would "
                       "share: run them one at a time (--workers 1), or give each its own "
                       "virtual phone (--device virtual)")


def finish(out: Path, jobs: list[EpisodeJob], skipped: int = 0) -> BenchRun:
    keys = {job.key for job in jobs}
    results = sorted((r for r in read_results(out) if r.key in keys),
                     key=lambda r: (r.task, r.seed))
    summary = write_summary(out, results, planned=len(jobs))
    return BenchRun(out, jobs, skipped, results, summary)


def write_summary(out: Path, results: list[EpisodeResult], planned: int) -> Summary:
    summary = Summary.of(results, planned=planned)
    replace_text(out / "summary.json", summary.model_dump_json(indent=2))
    write_reports(out, results, summary)
    return summary


def execute(
    jobs: list[EpisodeJob], out: Path, runner: JobRunner, workers: int, executor: Executor,
    ray_address: str | None,
) -> Iterator[EpisodeResult]:
    if not jobs:
        return iter(())
    if executor == "ray":
        return _on_ray(jobs, out, runner, ray_address, workers)
    if workers <= 1:
        return (runner(job, out) for job in jobs)
    if Path(jobs[0].model).is_dir():
        return _sharing_the_model(jobs, out, runner, workers)
    return _in_processes(jobs, out, runner, workers)


def _sharing_the_model(
    jobs: list[EpisodeJob], out: Path, runner: JobRunner, workers: int
) -> Iterator[EpisodeResult]:
    """Worker processes asking one model, loaded here (``shared_model``)."""
    from runtime.bench.shared_model import serve_to_workers

    workers = min(workers, len(jobs))
    with serve_to_workers(jobs, workers) as shared:
        runner = replace(runner, endpoint=shared.endpoint)
        for done, result in enumerate(_in_processes(jobs, out, runner, workers), start=1):
            yield result
            shared.running(min(workers, len(jobs) - done))


def _in_processes(
    jobs: list[EpisodeJob], out: Path, runner: JobRunner, workers: int
) -> Iterator[EpisodeResult]:
    """The jobs on ``workers`` processes, no more submitted than run at once: a Ctrl-C starts
    nothing new, and a worker that dies (killed, out of memory) ends the episodes then running
    in error lines (a resume runs them again) while a fresh pool runs the rest."""
    queue = deque(jobs)
    # spawn, not fork: the parent's threads (the progress bar) and locks do not leak into the
    # workers, and each worker starts its own browser, phone or X display from scratch.
    context = get_context("spawn")
    while queue:
        # A flag the workers poll, not an Event: a worker killed while it waited on an Event
        # left it counted as a sleeper, and setting the Event then waited for that worker to
        # wake, forever.
        stopped = context.RawValue("b", 0)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                   initializer=_follow_the_bench,
                                   initargs=(os.getpid(), stopped))
        running: dict[Future, EpisodeJob] = {}
        broken = False
        try:
            while running or (queue and not broken):
                while queue and not broken and len(running) < workers:
                    job = queue.popleft()
                    try:
                        running[pool.submit(_run_in_worker, runner, job, out)] = job
                    except BrokenProcessPool:  # a worker died since the last wait: the next
                        queue.appendleft(job)  # pool runs this one
                        broken = True
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    # The worker's exception, not raised here: a Ctrl-C of the bench raises
                    # this process's own KeyboardInterrupt.
                    failed = future.exception()
                    if isinstance(failed, BrokenProcessPool):
                        broken = True
                        result = runner.lost(
                            job, out, "WorkerLost: a worker process died while this episode "
                            "ran (killed, or out of memory)")
                    elif isinstance(failed, KeyboardInterrupt):
                        # The worker alone was stopped (``kill PID``): its episode ended as
                        # interrupted, and the worker goes on with the next.
                        result = runner.lost(
                            job, out, "WorkerStopped: the worker process running this episode "
                            f"was stopped ({str(failed) or 'interrupted'})")
                    else:
                        result = future.result()
                    yield result
        finally:
            # Queued episodes never start. A running one is stopped as by Ctrl-C: a terminal's
            # reached the workers too, but a SIGINT sent to this process alone did not, and
            # they would finish their episodes into results nobody writes.
            if running:
                stopped.value = 1
            pool.shutdown(wait=not running, cancel_futures=True)


#: Held while this worker process runs an episode (or once it may start no other).
_EPISODE = threading.Lock()
#: Set while this worker process runs an episode: what SIGUSR1 stops.
_IN_EPISODE = threading.Event()


def _run_in_worker(runner: JobRunner, job: EpisodeJob, out: Path) -> EpisodeResult:
    # Set before the lock is taken: whenever the watcher finds the lock held for an episode,
    # the signal it sends is not ignored.
    _IN_EPISODE.set()
    try:
        with _EPISODE:
            return runner(job, out)
    finally:
        _IN_EPISODE.clear()


def _follow_the_bench(bench: int, stopped: "c_byte") -> None:
    """A worker process's initializer. A bench killed without the chance to stop its pool
    (SIGKILL, SIGTERM, the OOM killer), or interrupted alone (``kill -INT PID``, not a
    terminal's Ctrl-C, which reaches the workers too), leaves its workers running: they would
    finish their episodes into a run nobody reads, beside a resume running the same ones. So
    once the bench is gone, or has set ``stopped``, the worker stops its episode as Ctrl-C does
    (the trajectory is finalized, the env's processes end) and exits."""
    why = "the bench process is gone"

    def stop(signum: int, frame: object) -> None:
        # A worker whose episode ended while the signal was on its way waits for the pool's
        # shutdown: raised there, the interrupt printed a traceback from the pool's queue.
        if _IN_EPISODE.is_set():
            raise KeyboardInterrupt(why)

    # A signal of its own: SIGINT may be ignored (a bench started in the background with &).
    signal.signal(signal.SIGUSR1, stop)
    own_ctrl_c = threading.Event()
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:

        def ctrl_c(signum: int, frame: object) -> None:
            own_ctrl_c.set()
            signal.default_int_handler(signum, frame)

        signal.signal(signal.SIGINT, ctrl_c)

    def watch() -> None:
        nonlocal why
        while os.getppid() == bench:
            if stopped.value:
                # The pool's shutdown ends this process once its episode has ended. Exiting
                # here would break the pool, which then kills the other workers mid-tear-down.
                why = "the bench was interrupted"
                # A terminal's Ctrl-C reaches this process too, and ends the episode by itself
                # (its handler may run a little after the bench's: give it that moment).
                if not _EPISODE.acquire(blocking=False) and not own_ctrl_c.wait(0.5):
                    os.kill(os.getpid(), signal.SIGUSR1)
                return
            time.sleep(0.2)
        if not _EPISODE.acquire(blocking=False):
            os.kill(os.getpid(), signal.SIGUSR1)
            _EPISODE.acquire()  # the episode has ended and closed its env
        os._exit(0)

    threading.Thread(target=watch, name="follow-the-bench", daemon=True).start()


def _run_on_worker(runner: JobRunner, job_json: str, out: str) -> str:
    """A Ray task: plain strings in and out, so any node with vlagent installed can run it."""
    return runner(EpisodeJob.model_validate_json(job_json), Path(out)).model_dump_json()


def _on_ray(
    jobs: list[EpisodeJob], out: Path, runner: JobRunner, address: str | None, workers: int
) -> Iterator[EpisodeResult]:
    try:
        import ray
    except ImportError:
        raise RunError("--executor ray needs ray: pip install 'vlagent[ray]'") from None
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address)
            except ConnectionError as exc:
                raise RunError(f"no Ray cluster at --ray-address {address}: {exc}") from None
        else:
            # "local": a new instance, never a cluster Ray would find by itself (RAY_ADDRESS,
            # the last `ray start` on this machine), which refuses a CPU count.
            ray.init(address="local", num_cpus=max(workers, 1), include_dashboard=False)
    # One CPU per episode: Ray runs as many at once as the cluster's nodes have CPUs.
    task = ray.remote(num_cpus=1, max_retries=0)(_run_on_worker)
    # A Ray worker runs in the folder its cluster started in: paths go to it absolute.
    pending = {task.remote(runner, job.model_copy(update={"model": absolute_model(job.model)})
                           .model_dump_json(), str(out.resolve())): job
               for job in jobs}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                # The line names the model as the bench was given it, as a local run's does.
                result = EpisodeResult.model_validate_json(ray.get(ref)).model_copy(
                    update={"model": job.model})
            except ray.exceptions.RayError as exc:  # its worker or node died
                result = runner.lost(job, out, f"{type(exc).__name__}: {exc}")
            yield result
    finally:
        for ref in pending:
            ray.cancel(ref)


def absolute_model(model: str) -> str:
    """``--model`` as another working directory reads it: a replay file's or a checkpoint
    folder's path made absolute (scripted stays as it is)."""
    if model.startswith("replay:"):
        return "replay:" + str(Path(model[len("replay:"):]).resolve())
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Refuse an address nothing listens on: ``ray.init`` would wait for it without end."""
    if address == "auto":
        return  # the cluster this machine started, which ray finds (or refuses) at once
    split = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = split.port
    except ValueError:
        port = None
    if split.hostname is None or port is None:
        raise RunError(f"--ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((split.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise RunError(f"no Ray cluster answers at --ray-address {address} "
                       f"({exc.strerror or exc})") from None


def load_settings(out: Path) -> BenchSettings:
    path = Path(out) / SETTINGS_FILE
    if not path.is_file():
        raise RunError(f"{out} is not a bench run: it has no {SETTINGS_FILE}")
    return _read_settings(path)


def _read_settings(path: Path) -> BenchSettings:
    try:
        return BenchSettings.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise RunError(f"{path} does not hold a bench run's settings "
                       f"({exc.errors()[0]['msg']})") from None
