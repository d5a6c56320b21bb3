"""The Env base: settling by polling frames, refusing unsupported kinds, and failure handling."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from core.actions import Answer, Click, Tap, Terminate, Wait
from envs.base import Env, EnvError, SettleConfig


class FakeEnv(Env):
    """Frames change ``changes`` times (one new frame per capture), then stay the same."""

    name = "fake"
    form_factor = "computer"
    action_kinds = frozenset({"click", "wait", "answer", "terminate"})  # a narrower env

    def __init__(self, changes: int, settle: SettleConfig | None = None) -> None:
        super().__init__(settle or SettleConfig(timeout_s=5.0, poll_interval_s=0.001))
        self.changes = changes
        self.captures = 0
        self.executed: list[str] = []
        self.fail_with: str | None = None

    def capture(self) -> Image.Image:
        shade = min(self.captures, self.changes)
        self.captures += 1
        return Image.new("RGB", (8, 4), (shade, 0, 0))

    def _execute(self, action) -> str:
        if self.fail_with:
            raise EnvError(self.fail_with)
        self.executed.append(action.kind)
        return "done"


@pytest.mark.parametrize("changes", [0, 1, 5])
def test_observe_polls_until_two_frames_match(changes: int) -> None:
    env = FakeEnv(changes)
    obs = env.observe()
    assert obs.extras["settled"] is True
    # Frame i has shade min(i, changes): the first equal pair is frames changes and changes+1.
    assert env.captures == changes + 2
    assert obs.image.getpixel((0, 0)) == (changes, 0, 0)
    assert obs.size == (8, 4)
    assert obs.extras["settle_ms"] >= 0


def test_a_first_capture_that_waits_leaves_the_screen_its_time_to_settle() -> None:
    """A page whose slow server answers during the first capture is drawn after it: the
    frames after that one settle it, though the capture took longer than the timeout."""
    class SlowFirstCapture(FakeEnv):
        def capture(self) -> Image.Image:
            if self.captures == 0:
                time.sleep(0.3)
            return super().capture()

    env = SlowFirstCapture(changes=2, settle=SettleConfig(timeout_s=0.2, poll_interval_s=0.001))
    obs = env.observe()
    assert obs.extras["settled"] is True and env.captures == 4
    assert obs.image.getpixel((0, 0)) == (2, 0, 0)


def test_observe_gives_up_after_the_timeout_and_says_so() -> None:
    env = FakeEnv(changes=10**9, settle=SettleConfig(timeout_s=0.05, poll_interval_s=0.001))
    obs = env.observe()
    assert obs.extras["settled"] is False
    assert obs.extras["settle_ms"] >= 50
    assert env.captures > 2


def test_unsupported_kind_is_refused_without_touching_the_env() -> None:
    env = FakeEnv(0)
    result = env.execute(Tap(x=1, y=1))
    assert not result.ok
    assert "does not support 'tap'" in result.message and "click" in result.message
    assert env.executed == []


def test_a_point_off_the_last_screenshot_is_refused_without_touching_the_env() -> None:
    env = FakeEnv(0)
    assert env.execute(Click(x=100, y=100)).ok  # nothing observed yet: no size to judge by
    env.observe()  # an 8x4 screenshot
    for x, y in ((8, 0), (0, 4), (-1, 2)):
        result = env.execute(Click(x=x, y=y))
        assert not result.ok and f"({x}, {y}) is outside the 8x4 screen" in result.message
        assert "nothing was done" in result.message
    assert env.executed == ["click"]
    assert env.execute(Click(x=7, y=3)).ok and env.executed == ["click", "click"]


def test_supported_kind_runs_and_env_errors_become_failed_results() -> None:
    env = FakeEnv(0)
    assert env.execute(Click(x=1, y=2)).ok
    assert env.executed == ["click"]
    env.fail_with = "device went away"
    result = env.execute(Click(x=1, y=2))
    assert not result.ok and result.error == "device went away"


def test_wait_answer_and_terminate_are_handled_by_the_base() -> None:
    env = FakeEnv(0)
    waited = env.execute(Wait(seconds=0.01))
    assert waited.ok and waited.elapsed_ms >= 10
    assert env.execute(Answer(text="42")).ok
    assert env.execute(Terminate(status="success")).ok
    assert env.executed == []
