"""The loop with tiny random Qwen2-VL / Qwen2.5-VL checkpoints: real processor and generation,
garbage text."""

from __future__ import annotations

import pytest

from actions.dialects import get_dialect
from agent.loop import Agent, AgentConfig
from agent.policies.local import LocalPolicy
from tests.agent_fakes import FakePhone
from trajectories.reader import load
from trajectories.recorder import Recorder

SMALL = 64 * 28 * 28  # a small image budget keeps the CPU run fast


@pytest.mark.parametrize(
    ("checkpoint", "dialect"),
    [("tiny_checkpoint", "qwen2vl"), ("tiny_qwen25_checkpoint", "qwen25vl")],
    ids=["qwen2-vl", "qwen2.5-vl"],
)
def test_random_garbage_cut_by_the_token_budget_ends_the_run_cleanly(request, checkpoint, dialect,
                                                                     tmp_path):
    tiny_checkpoint = request.getfixturevalue(checkpoint)
    env = FakePhone()
    policy = LocalPolicy(tiny_checkpoint, device="cpu", max_new_tokens=12)
    config = AgentConfig(max_steps=10, max_parse_errors=2, max_pixels=SMALL)
    agent = Agent(env, policy, get_dialect(dialect, env.form_factor), config=config,
                  recorder=Recorder(tmp_path / "traj"))
    result = agent.run("Open the settings")

    # A random model never writes a stop string: its first reply fills the budget unparsed.
    assert result.status == "limit", result.reason
    assert "whole token budget (12 new tokens)" in result.reason
    traj = load(tmp_path / "traj")
    assert traj.meta.status == "limit" and traj.meta.model == str(tiny_checkpoint)
    assert traj.meta.reason == result.reason
    assert len(traj.steps) == result.steps == 1 and env.executed == []
    for step in traj.steps:
        assert step.parse_error and step.action is None
        assert (traj.directory / step.image).is_file()
        assert step.prompt_tokens and step.prompt_tokens > 0
        # The count made before the call is the length of what the model was given.
        assert step.usage["prompt_tokens"] == step.prompt_tokens
        assert step.usage["new_tokens"] == 12 and step.usage["truncated"] is True
        assert step.timings.model_ms > 0


def test_cli_runs_a_local_checkpoint_on_the_browser(tiny_checkpoint, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import require_tool

    require_tool("chromium")
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(repo / "agent_cli.py"), "run", "Click the button", "--env",
         "browser", "--model", str(tiny_checkpoint), "--max-pixels", str(SMALL), "--max-new-tokens", "8",
         "--max-parse-errors", "1", "--out", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # stopped, not crashed
    assert "status: limit after" in done.stdout and "whole token budget (8 new" in done.stdout
    assert f"model: {tiny_checkpoint} on cpu (float32)" in " ".join(done.stdout.split())
    (directory,) = list((tmp_path / "runs").iterdir())
    traj = load(directory)
    # A reply that ended within the budget is a parse error fed back; the one cut off ends it.
    assert traj.meta.status == "limit" and 1 <= len(traj.steps) <= 2
    assert traj.steps[-1].usage["truncated"] and traj.steps[-1].usage["new_tokens"] == 8
    assert all(s.prompt_tokens for s in traj.steps)


def test_prompt_token_count_includes_each_screenshot_at_the_screen_budget(tiny_checkpoint):
    from PIL import Image

    from actions.dialects import ImagePart, Message, Prompt, TextPart
    from agent.policies.local import PromptRenderer
    from core.geometry import Screen

    renderer = PromptRenderer.from_pretrained(tiny_checkpoint)
    frames = [Image.new("RGB", (1080, 2400))]
    text_only = Prompt([Message("user", [TextPart("Book a flight")])])
    with_image = Prompt([Message("user", [TextPart("Book a flight"), ImagePart(0)])])
    full = Screen(1080, 2400)  # the checkpoints' budget: 1092x2408 -> 3,354 tokens (DESIGN §4)
    extra = renderer.count_tokens(with_image, frames, full) - \
        renderer.count_tokens(text_only, frames, full)
    assert extra == 3354 + 2  # plus <|vision_start|> and <|vision_end|>
    small = Screen(1080, 2400, max_pixels=SMALL)
    assert renderer.count_tokens(with_image, frames, small) < \
        renderer.count_tokens(with_image, frames, full)


# No --dialect: a Qwen2.5-VL checkpoint is prompted in its family's own (qwen25vl).
@pytest.mark.parametrize(("flag", "dialect"), [((), "qwen25vl"), (("--dialect", "uitars15"), "uitars15")])
def test_cli_runs_a_tiny_qwen25_checkpoint_on_the_virtual_phone(tiny_qwen25_checkpoint, flag, dialect,
                                                               tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import require_tool

    require_tool("adb")
    require_tool("chromium")
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(repo / "agent_cli.py"), "run", "--task", "phone/write-note", "--env",
         "android", "--device", "virtual", "--model", str(tiny_qwen25_checkpoint), *flag,
         "--max-pixels", str(SMALL), "--max-new-tokens", "8", "--max-parse-errors", "1", "--out", "runs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # stopped, not crashed
    # Random replies fill the 8-token budget unparsed, which ends the run on its first step.
    assert "status: limit after 1 step(s)" in done.stdout, done.stdout
    (directory,) = list((tmp_path / "runs").iterdir())
    traj = load(directory)
    assert traj.meta.status == "limit" and traj.meta.dialect == dialect
    assert traj.meta.device == "virtual" and len(traj.steps) == 1
    assert all(s.parse_error and s.prompt_tokens for s in traj.steps)
