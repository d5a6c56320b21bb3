"""Text that is not valid Unicode still records: a lone surrogate becomes U+FFFD.

Such text reaches the recorder in ordinary runs: chromium reports a page title that a script cut
inside an emoji ("Deal \\ud83d") as a lone surrogate, and Python reads a command-line goal holding
bytes that are not UTF-8 as lone surrogates ("caf\\udce9"). Neither can be written as UTF-8, and
the step (or the whole run) must not be lost for it.
"""

from __future__ import annotations

from actions.dialects import get_dialect
from agent.loop import Agent
from tests.agent_fakes import FakePhone, ListPolicy
from trajectories.reader import load
from trajectories.recorder import Recorder
from trajectories.viewer import write_view

REPLACEMENT = "\ufffd"


class TitledPhone(FakePhone):
    """A fake phone whose observations carry a title cut inside an emoji, as chromium reports
    ``document.title = "Deal 😀".slice(0, 6)``."""

    def extras(self):
        return {**super().extras(), "title": "Deal \ud83d"}


def test_lone_surrogates_in_goal_reply_and_extras_are_recorded_as_replacement_characters(
    tmp_path,
):
    env = TitledPhone()
    replies = [
        'Half an emoji: \ud83d\n*FUNCTION*: Type *ARGS*: {"text": "café"}',
        '*FUNCTION*: Terminate *ARGS*: {"status": "success"}',
    ]
    agent = Agent(env, ListPolicy(replies), get_dialect("qwen2vl", env.form_factor),
                  recorder=Recorder(tmp_path / "t"))
    result = agent.run("Order a caf\udce9")  # argv's surrogateescape of the byte 0xe9

    assert (result.status, result.steps) == ("success", 2), result.reason
    trajectory = load(tmp_path / "t")
    assert trajectory.meta.status == "success" and trajectory.meta.steps == 2
    assert trajectory.meta.goal == f"Order a caf{REPLACEMENT}"
    first, second = trajectory.steps
    assert first.response.startswith(f"Half an emoji: {REPLACEMENT}\n")
    assert first.thought == f"Half an emoji: {REPLACEMENT}"
    assert first.action == {"kind": "type", "text": "café"}
    assert first.extras["title"] == f"Deal {REPLACEMENT}"
    assert second.action["kind"] == "terminate"
    # The rest of the record is as the loop made it, and the view of it can be written.
    assert first.result is not None and first.result.ok
    html = write_view(tmp_path / "t").read_text(encoding="utf-8")
    assert f"Order a caf{REPLACEMENT}" in html


def test_a_surrogate_pair_split_in_two_code_points_is_joined(tmp_path):
    env = FakePhone()
    split = "\ud83d\ude00"  # 😀 as two UTF-16 halves, as a JSON "\ud83d\ude00" escape may leave it
    replies = [f'{split}\n*FUNCTION*: Terminate *ARGS*: {{"status": "success"}}']
    Agent(env, ListPolicy(replies), get_dialect("qwen2vl", env.form_factor),
          recorder=Recorder(tmp_path / "t")).run("Smile")
    (step,) = load(tmp_path / "t").steps
    assert step.response.startswith("😀\n")
