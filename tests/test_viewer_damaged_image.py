"""A damaged screenshot costs the view that one picture, not the whole page.

A trajectory folder copied by an interrupted ``scp`` or ``rsync``, or kept on a disk that went
bad, can hold a screenshot cut short or overwritten. ``view`` already shows a missing screenshot
as missing; a damaged one must be shown as such too, with every other step drawn.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageSequence

from actions.dialects import get_dialect
from agent.loop import Agent
from tests.agent_fakes import FakePhone, ListPolicy
from trajectories.animation import write_gif
from trajectories.recorder import Recorder
from trajectories.viewer import write_view

REPLIES = [
    '*FUNCTION*: Tap *ARGS*: {"point": (500, 250)}',
    '*FUNCTION*: Home *ARGS*: {}',
    '*FUNCTION*: Terminate *ARGS*: {"status": "success"}',
]


@pytest.fixture(params=["truncated", "garbage", "over-the-pixel-limit"])
def damaged(tmp_path, request, monkeypatch):
    env = FakePhone()
    agent = Agent(env, ListPolicy(REPLIES), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "t"))
    assert agent.run("Look around").status == "success"
    image = tmp_path / "t" / "images" / "step_001.png"
    data = image.read_bytes()
    if request.param == "over-the-pixel-limit":
        # PIL refuses an image over twice its limit (a damaged header can claim any size): it
        # raised DecompressionBombError, no OSError, and view ended in a traceback.
        Image.new("1", (3000, 3000)).save(image)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3_000_000)  # the others are 2.6M
    else:
        image.write_bytes(data[: len(data) // 2] if request.param == "truncated" else b"not a png")
    return tmp_path / "t"


def test_the_view_shows_a_damaged_screenshot_as_unreadable_and_draws_the_rest(damaged):
    html = write_view(damaged).read_text(encoding="utf-8")
    assert html.count("<section class='step'") == len(REPLIES)
    assert html.count("src='data:image/jpeg;base64,") == len(REPLIES) - 1
    assert "unreadable images/step_001.png" in html


def test_the_gif_leaves_out_a_damaged_screenshot(damaged, tmp_path):
    path = write_gif(damaged, tmp_path / "episode.gif")
    with Image.open(path) as gif:
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == len(REPLIES) - 1
