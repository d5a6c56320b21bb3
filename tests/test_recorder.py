"""The recorder's write order and atomic meta.json."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from trajectories.reader import TrajectoryError, load
from trajectories.recorder import Recorder, new_run_dir
from trajectories.records import Meta, RecordedPrompt, StepRecord


def meta() -> Meta:
    return Meta(goal="g", env="fake", model="m", dialect="qwen2vl", action_kinds=["tap"],
                min_pixels=3136, max_pixels=100_000, started_at="2026-01-01T00:00:00Z")


def step(i: int, image: str) -> StepRecord:
    return StepRecord(step=i, image=image, screen=(8, 8), prompt=RecordedPrompt(messages=[]),
                      response=f"reply {i}")


def test_record_and_finish_round_trip(tmp_path):
    recorder = Recorder(tmp_path / "t")
    recorder.start(meta())
    assert load(tmp_path / "t").meta.status == "running"
    for i in range(2):
        name = recorder.save_image(i, Image.new("RGB", (8, 8), (i, 0, 0)))
        recorder.record(step(i, name))
        assert len(load(tmp_path / "t").steps) == i + 1
    recorder.finish("success", "done")
    traj = load(tmp_path / "t")
    assert [s.response for s in traj.steps] == ["reply 0", "reply 1"]
    assert (traj.meta.status, traj.meta.reason, traj.meta.steps) == ("success", "done", 2)
    assert traj.meta.finished_at is not None
    assert Image.open(tmp_path / "t" / "images" / "step_001.png").getpixel((0, 0)) == (1, 0, 0)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["images", "meta.json",
                                                                    "steps.jsonl"]


def test_a_line_is_never_written_before_its_image(tmp_path):
    recorder = Recorder(tmp_path / "t")
    recorder.start(meta())
    with pytest.raises(FileNotFoundError, match="was not saved first"):
        recorder.record(step(0, "images/step_000.png"))
    assert (tmp_path / "t" / "steps.jsonl").read_text() == ""


def test_a_directory_is_never_recorded_twice(tmp_path):
    Recorder(tmp_path / "t").start(meta())
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "t").start(meta())


def test_new_run_dirs_are_made_at_once_so_two_runs_never_share_one(tmp_path):
    # Two runs started in the same second, neither yet recording: each has its own folder.
    first = new_run_dir(tmp_path / "runs", "phone/book-flight")
    second = new_run_dir(tmp_path / "runs", "phone/book-flight")
    assert first != second and first.name.endswith("phone-book-flight")
    assert first.is_dir() and second.is_dir()
    Recorder(first).start(meta())
    Recorder(second).start(meta())


def test_load_errors(tmp_path):
    with pytest.raises(TrajectoryError, match="its meta.json is missing"):
        load(tmp_path)
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(TrajectoryError, match="meta.json is not valid"):
        load(tmp_path)
    (tmp_path / "meta.json").write_text(meta().model_dump_json())
    (tmp_path / "steps.jsonl").write_text('{"step": 0}\n' + json.dumps({}) + "\n")
    with pytest.raises(TrajectoryError, match="steps.jsonl:1 holds an invalid step"):
        load(tmp_path)


def test_a_last_line_cut_inside_a_character_is_ignored(tmp_path):
    """A kill can cut the last line inside a multi-byte character: the lines before it load; a
    complete line that is not UTF-8 is an error that names it."""
    (tmp_path / "meta.json").write_text(meta().model_dump_json())
    whole = StepRecord(**{**step(0, "images/step_000.png").model_dump(), "response": "ok 😀"})
    line = whole.model_dump_json().encode() + b"\n"
    torn = line[: line.index("😀".encode()) + 2]
    (tmp_path / "steps.jsonl").write_bytes(line + torn)
    assert [s.response for s in load(tmp_path).steps] == ["ok 😀"]
    (tmp_path / "steps.jsonl").write_bytes(torn + b"\n" + line)
    with pytest.raises(TrajectoryError, match="steps.jsonl:1 holds an invalid step"):
        load(tmp_path)
    # A whole last step without its newline (a file another tool wrote) is a step, not a torn
    # line: it was dropped without a word.
    (tmp_path / "steps.jsonl").write_bytes(line + line.rstrip(b"\n"))
    assert [s.response for s in load(tmp_path).steps] == ["ok 😀", "ok 😀"]


def test_ctrl_c_right_after_a_line_still_counts_it(tmp_path, monkeypatch):
    # A SIGINT that lands in the line's fsync must not leave meta.json behind steps.jsonl.
    recorder = Recorder(tmp_path / "t")
    recorder.start(meta())
    name = recorder.save_image(0, Image.new("RGB", (8, 8)))

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("trajectories.recorder.os.fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        recorder.record(step(0, name))
    monkeypatch.undo()
    recorder.finish("interrupted", "stopped by Ctrl-C")
    traj = load(tmp_path / "t")
    assert traj.meta.steps == len(traj.steps) == 1


def test_ctrl_c_between_a_lines_write_and_its_flush_still_counts_it(tmp_path):
    # The line sits in the file's buffer: finish writes it out before counting the lines.
    recorder = Recorder(tmp_path / "t")
    recorder.start(meta())
    name = recorder.save_image(0, Image.new("RGB", (8, 8)))
    recorder._steps.write(step(0, name).model_dump_json() + "\n")  # the flush never came
    recorder.finish("interrupted", "stopped by Ctrl-C")
    traj = load(tmp_path / "t")
    assert traj.meta.steps == len(traj.steps) == 1


def test_an_encoded_screenshot_is_written_as_is(tmp_path):
    import io

    recorder = Recorder(tmp_path / "t")
    recorder.start(meta())
    encoded = io.BytesIO()
    Image.new("RGB", (8, 8), (7, 8, 9)).save(encoded, format="PNG", compress_level=9)
    name = recorder.save_image(0, Image.new("RGB", (8, 8), (7, 8, 9)), encoded.getvalue())
    assert (tmp_path / "t" / name).read_bytes() == encoded.getvalue()
