"""A bench process killed while its worker processes run episodes (``kill PID``, SIGKILL, the OOM
killer) takes its workers with it: each stops its episode as Ctrl-C would, closes its env and
exits, instead of finishing into a run nobody reads and then waiting for a next job for ever."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.bench.execute import JobRunner
from runtime.bench.plan import BenchSettings
from runtime.bench.results import read_results
from runtime.bench.runner import run_bench
from tests.bench_fakes import RIGHT, SlowPhone

ROOT = Path(__file__).resolve().parents[1]


class DawdlingPhone(SlowPhone):
    """Each action takes a second, so an episode is still running when the bench is killed."""

    delay = 1.0


@contextlib.contextmanager
def marking_env(spec, console):
    """A dawdling phone that leaves ``started-PID`` in --out, and ``closed-PID`` once closed."""
    out = Path(spec.out)
    pid = os.getpid()
    (out / f"started-{pid}").touch()
    try:
        yield DawdlingPhone(), "fake"
    finally:
        (out / f"closed-{pid}").touch()


DAWDLING = JobRunner(RIGHT.catalog, marking_env)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def pids(out: Path, prefix: str) -> set[int]:
    return {int(p.name.removeprefix(prefix)) for p in out.glob(f"{prefix}*")}


@pytest.mark.parametrize(
    ("signum", "reason", "status"),
    [(signal.SIGKILL, "bench process is gone", -signal.SIGKILL),
     # `timeout`, systemd, `docker stop`: the bench stops its pool as on Ctrl-C, and says which
     # signal stopped it (128 + 15, as a shell reports a program SIGTERM ended).
     (signal.SIGTERM, "bench was interrupted", 143),
     # `kill -INT PID`: the bench alone is interrupted, not its workers as a terminal's Ctrl-C
     # would be; they used to finish their episodes, whose results were then dropped.
     (signal.SIGINT, "bench was interrupted", 130),
     # A terminal's Ctrl-C (to the whole process group) ends each episode once, as such.
     ("ctrl-c", "stopped by Ctrl-C", 130)],
)
def test_workers_of_a_killed_bench_stop_their_episodes_and_exit(tmp_path, signum, reason,
                                                                 status):
    out = tmp_path / "run"
    # Started in the background (&) by a shell: SIGINT is ignored, in its workers too.
    ignore = "" if signum in (signal.SIGINT, "ctrl-c") else \
        "signal.signal(signal.SIGINT, signal.SIG_IGN); "
    code = (f"import signal, sys; {ignore}"
            "import cli.bench_cmd as b; from tests import test_bench_orphans as t; "
            "b.default_runner = lambda: t.DAWDLING; from cli.app import app; app(sys.argv[1:])")
    args = ["bench", "--suite", "fake", "--episodes", "2", "--seed", "7", "--workers", "2",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        # Both episodes running: their envs started and their trajectories begun (a signal
        # between the two ends an episode before it records anything, and a resume reruns it).
        while len(workers := pids(out, "started-")) < 2 or len(
                list((out / "trajectories").glob("*/meta.json"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "two episodes did not start within 120 s"
            time.sleep(0.05)
        if signum == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signum)
        assert proc.wait(30) == status
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
        assert not left, f"worker processes {left} outlived the bench"
        assert pids(out, "closed-") >= workers  # each closed its env on the way out
        assert read_results(out) == []  # the cut episodes were not counted
        ended = [json.loads(meta.read_text())
                 for meta in (out / "trajectories").glob("*/meta.json")]
        assert len(ended) == 2
        assert all(m["status"] == "interrupted" and reason in m["reason"]
                   for m in ended), [(m["status"], m.get("reason")) for m in ended]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)
    settings = BenchSettings(suite="fake", episodes=2, seed=7, model="scripted")
    resumed = run_bench(settings, out, runner=RIGHT)
    assert resumed.skipped == 0 and resumed.summary.overall.successes == 4


def test_a_worker_between_episodes_lets_the_stop_signal_pass():
    """The stop signal reaches a worker whose episode ended a moment before: raised in the idle
    worker, it printed a traceback from the pool's queue (one interrupt in ten)."""
    script = ("import os, signal, threading, time\n"
              "from runtime.bench.runner import _follow_the_bench\n"
              "_follow_the_bench(os.getppid(), threading.Event())\n"
              "os.kill(os.getpid(), signal.SIGUSR1)\n"
              "time.sleep(0.2)\n"
              "print('still waiting for a job')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "still waiting" in done.stdout, done.stderr
