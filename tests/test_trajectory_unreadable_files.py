"""A trajectory whose files cannot be read gets a clear error from every command, never a
traceback: a steps.jsonl or meta.json without read permission (a run recorded by another user
under umask 077), or a path that is a folder."""

from __future__ import annotations

import pytest

from tests.test_agent_cli import cli
from trajectories.reader import TrajectoryError, load
from trajectories.recorder import Recorder
from trajectories.records import Meta


def trajectory(tmp_path):
    Recorder(tmp_path / "t").start(Meta(
        goal="g", env="android", model="m", dialect="qwen2vl", action_kinds=["tap"],
        min_pixels=3136, max_pixels=100_000, started_at="2026-01-01T00:00:00Z"))
    return tmp_path / "t"


@pytest.mark.parametrize("name", ["steps.jsonl", "meta.json"])
def test_load_names_a_file_that_cannot_be_read(tmp_path, name):
    directory = trajectory(tmp_path)
    (directory / name).unlink()
    (directory / name).mkdir()  # unreadable as a file, whoever runs the test (root included)
    with pytest.raises(TrajectoryError, match=name):
        load(directory)


def test_replay_of_an_unreadable_trajectory_is_a_clear_error(tmp_path):
    directory = trajectory(tmp_path)
    (directory / "steps.jsonl").unlink()
    (directory / "steps.jsonl").mkdir()
    done = cli("replay", str(directory), "--out", "again", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr and "steps.jsonl" in done.stderr
    assert not (tmp_path / "again").exists()
