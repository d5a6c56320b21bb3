"""End to end on the virtual phone through the real adb: the demo books a flight, and its
trajectory replays to the same final state; a second task runs in another dialect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tasks.registry import get_task
from tests.conftest import require_tool
from trajectories.reader import load

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(REPO / "agent_cli.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "COLUMNS": "160"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def only_run(root: Path) -> Path:
    (directory,) = [p for p in root.iterdir() if p.is_dir()]
    return directory


def test_demo_books_the_flight_and_its_trajectory_replays(tmp_path):
    require_tool("adb")
    require_tool("chromium")
    done = cli("demo", "--out", "runs", cwd=tmp_path)
    directory = only_run(tmp_path / "runs")
    assert "check: passed" in done.stdout
    assert f"view: {(directory / 'view.html').resolve()}" in done.stdout
    traj = load(directory)
    assert traj.meta.status == "success" and traj.meta.task == "phone/book-flight"
    assert traj.meta.check.success, traj.meta.check
    assert traj.meta.device == "virtual" and traj.meta.model == "scripted"
    kinds = [s.action["kind"] for s in traj.steps]
    assert kinds.count("type") == 4 and kinds[-1] == "terminate"
    assert all(s.parse_error is None and s.result.ok for s in traj.steps)
    assert (directory / "view.html").is_file()

    # Replaying on a fresh virtual phone repeats every action and books the same flight.
    # The replayed taps include "Confirm booking", which the safety gate asks about: --yes.
    cli("replay", str(directory), "--out", "again", "--yes", cwd=tmp_path)
    again = load(only_run(tmp_path / "again"))
    assert again.meta.model == f"replay:{directory}"
    assert again.meta.check.success and again.meta.check.reason == traj.meta.check.reason
    assert [s.action for s in again.steps] == [s.action for s in traj.steps]


def test_scripted_note_task_in_the_uitars_dialect(tmp_path):
    require_tool("adb")
    require_tool("chromium")
    cli("run", "--task", "phone/write-note", "--seed", "5", "--env", "android", "--device",
        "virtual", "--model", "scripted", "--dialect", "uitars", "--out", "runs", cwd=tmp_path)
    traj = load(only_run(tmp_path / "runs"))
    assert traj.meta.dialect == "uitars" and traj.meta.check.success, traj.meta.check
    task = get_task("phone/write-note", seed=5)
    assert (traj.meta.seed, traj.meta.params, traj.meta.goal) == (5, task.params, task.goal)
    assert traj.steps[2].response.startswith("Thought: Write the note.")
    assert traj.steps[2].action == {"kind": "type", "text": task.params["text"]}
