"""LLaMA-Factory trains on the screenshots the model saw: export says which image settings give
them (it shrinks images over ``image_max_pixels`` itself before the processor's resize)."""

from __future__ import annotations

import math

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from core.geometry import smart_resize
from tests.agent_fakes import FakePhone, ListPolicy
from tests.test_agent_cli import cli
from trajectories.export import export
from trajectories.reader import load
from trajectories.recorder import Recorder

DONE = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": ' \
       '"success"}}\n</tool_call>'


def recorded(directory, max_pixels: int):
    env = FakePhone()  # 1080x2400 screenshots
    Agent(env, ListPolicy([DONE]), get_dialect("qwen25vl", env.form_factor),
          config=AgentConfig(max_pixels=max_pixels), recorder=Recorder(directory)).run("x")
    return directory


def llamafactory_grid(width: int, height: int, image_max_pixels: int, min_pixels: int,
                      max_pixels: int) -> tuple[int, int]:
    """The size LLaMA-Factory's Qwen2-VL plugin gives an image: its own shrink to
    ``image_max_pixels`` (int sizes), then the processor's smart_resize."""
    if width * height > image_max_pixels:
        factor = math.sqrt(image_max_pixels / (width * height))
        width, height = int(width * factor), int(height * factor)
    return smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)


def test_llamafactory_export_names_the_settings_that_keep_the_recorded_images(tmp_path):
    small, default = recorded(tmp_path / "small", 64 * 28 * 28), recorded(tmp_path / "big",
                                                                          12_845_056)
    for directory in (small, default):
        summary = export([directory], "llamafactory", "step", tmp_path / "x.json")
        ((low, high),) = summary.pixel_budgets
        step = load(directory).steps[0]
        seen = smart_resize(step.screen[1], step.screen[0], min_pixels=low, max_pixels=high)
        assert llamafactory_grid(*step.screen, summary.largest_image, low, high) == seen
    # LLaMA-Factory's defaults would train another image than the model saw (docs/export.md).
    assert smart_resize(2400, 1080) == (2408, 1092)
    assert llamafactory_grid(1080, 2400, 768 * 768, 3136, 12_845_056) == (1148, 504)

    done = cli("export", str(small), "--format", "llamafactory", "--out", "a.json",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (f"image_max_pixels: {1080 * 2400} (or more)" in done.stdout
            and f"min_pixels 3136 and max_pixels {64 * 28 * 28}" in done.stdout)
    mixed = cli("export", str(small), str(default), "--format", "llamafactory", "--out",
                "b.json", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    assert f"warning: the screenshots were recorded at 2 resize budgets (min_pixels/max_pixels " \
           f"3136/{64 * 28 * 28}, 3136/12845056)" in mixed.stderr
    assert "image_max_pixels" not in cli("export", str(small), "--out", "c.jsonl",
                                         cwd=tmp_path).stdout
