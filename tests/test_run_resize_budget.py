"""A run resizes screenshots within the checkpoint's own budget unless told otherwise: a model
fine-tuned at another max_pixels sees screenshots as transformers' processor of that checkpoint
gives them, and its resized-pixel coordinates are read at that size. It was run at the released
12,845,056 whatever the checkpoint said."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from PIL import Image
from rich.console import Console

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smart_resize
from runtime.build import resize_budget, resolve_dialect
from runtime.episode import run
from runtime.settings import RunError, RunSpec
from tests.agent_fakes import FakePhone
from tests.conftest import copy_checkpoint
from trajectories.reader import load

LOW, HIGH = 6272, 64 * 28 * 28


@pytest.fixture
def trained_small(tiny_checkpoint, tmp_path):
    """The tiny checkpoint, its processor set to another budget, as a fine-tune might save it."""
    return copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt", "preprocessor_config.json",
                           lambda settings: {**{k: v for k, v in settings.items() if k != "size"},
                                             "min_pixels": LOW, "max_pixels": HIGH})


def test_the_budget_is_the_runs_then_the_checkpoints_then_the_released_one(trained_small):
    assert resize_budget(RunSpec(goal="g", model=str(trained_small))) == (LOW, HIGH)
    assert resize_budget(RunSpec(goal="g", model=str(trained_small), max_pixels=10**6)) == (
        LOW, 10**6)
    assert resize_budget(RunSpec(goal="g", model="http://127.0.0.1:9/v1",
                                 processor=str(trained_small), min_pixels=4000)) == (4000, HIGH)
    assert resize_budget(RunSpec(goal="g", model="scripted")) == (DEFAULT_MIN_PIXELS,
                                                                  DEFAULT_MAX_PIXELS)
    with pytest.raises(RunError, match=f"min_pixels {HIGH + 1} above max_pixels {HIGH}"):
        resize_budget(RunSpec(goal="g", model=str(trained_small), min_pixels=HIGH + 1))


def test_a_checkpoint_without_a_maximum_takes_transformers_default(trained_small):
    file = trained_small / "preprocessor_config.json"
    settings = json.loads(file.read_text())
    del settings["max_pixels"]
    file.write_text(json.dumps(settings))
    assert resize_budget(RunSpec(goal="g", model=str(trained_small))) == (LOW, 1280 * 28 * 28)


def test_a_run_shows_the_model_screenshots_at_its_checkpoints_budget(trained_small, tmp_path):
    from transformers import Qwen2VLImageProcessorPil

    @contextlib.contextmanager
    def phone(spec, console):
        yield FakePhone(), "fake"

    spec = RunSpec(goal="Open the settings", model=str(trained_small), dialect="qwen25vl",
                   max_steps=1, max_new_tokens=4, out=tmp_path / "runs")
    outcome = run(spec, Console(file=io.StringIO()), env_factory=phone)
    trajectory = load(outcome.directory)
    assert (trajectory.meta.min_pixels, trajectory.meta.max_pixels) == (LOW, HIGH)

    step = trajectory.steps[0]
    reference = Qwen2VLImageProcessorPil.from_pretrained(trained_small)
    grid = reference.preprocess([Image.open(outcome.directory / step.image)],
                                return_tensors="pt")["image_grid_thw"][0].tolist()
    seen = smart_resize(step.screen[1], step.screen[0], min_pixels=LOW, max_pixels=HIGH)
    assert [1, seen[0] // 14, seen[1] // 14] == grid
    assert seen != smart_resize(step.screen[1], step.screen[0])  # the released budget differs


def test_a_replayed_trajectory_keeps_the_budget_its_points_were_written_at(tmp_path):
    """`run --model replay:DIR` takes the trajectory's dialect, and so its resize budget: a
    qwen25vl point in a 1003520-pixel screenshot read at 12845056 lands elsewhere (`replay`
    already passed both)."""
    from runtime.settings import RunSpec
    from tests.test_export import SMALL, record
    from trajectories.reader import load

    traj = record(tmp_path / "traj", "qwen25vl")
    meta = load(traj).meta
    assert meta.max_pixels == SMALL != DEFAULT_MAX_PIXELS
    assert resize_budget(RunSpec(goal="x", model=f"replay:{traj}")) == (meta.min_pixels, SMALL)
    # A bound the run names still wins.
    assert resize_budget(RunSpec(goal="x", model=f"replay:{traj}", max_pixels=SMALL * 2)) == (
        meta.min_pixels, SMALL * 2)
    # Its steps.jsonl named as the replies' file was written at the same budget and dialect.
    steps = f"replay:{traj / 'steps.jsonl'}"
    assert resize_budget(RunSpec(goal="x", model=steps)) == (meta.min_pixels, SMALL)
    assert resolve_dialect(RunSpec(goal="x", model=steps)) == "qwen25vl"
    # A replies file of its own has no run behind it: the released budget.
    (tmp_path / "replies.jsonl").write_text((traj / "steps.jsonl").read_text())
    assert resize_budget(RunSpec(goal="x", model=f"replay:{tmp_path / 'replies.jsonl'}")) == (
        DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
