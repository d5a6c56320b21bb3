"""What a real phone's screen does that the virtual phone's does not: it goes off after its
timeout while the model thinks (the env turns it on before it looks, and does not send an
action chosen on a screen that has since gone off: it would land on the lock screen, or be
lost), and it may never go idle for ``uiautomator dump`` (a video)."""

from __future__ import annotations

import pytest

from core.actions import Tap, Type
from envs.base import EnvError
from tests.adb_fakes import FakeAdbDevice, fake_android_env


class SleepyPhone(FakeAdbDevice):
    """Its screen is off until ``input keyevent KEYCODE_WAKEUP`` (or for good: ``stuck``)."""

    def __init__(self, stuck: bool = False) -> None:
        super().__init__()
        self.awake, self.stuck = True, stuck

    def _answer(self, command: str):
        answer = super()._answer(command)
        if command == "dumpsys power":
            answer.output = ("POWER MANAGER (dumpsys power)\n  mWakefulnessChanging=false\n"
                             f"  mWakefulness={'Awake' if self.awake else 'Asleep'}\n")
        elif command == "input keyevent KEYCODE_WAKEUP" and not self.stuck:
            self.awake = True
        return answer


def test_an_observation_turns_the_screen_on_first():
    phone = SleepyPhone()
    env = fake_android_env(phone)
    assert "woke" not in env.observe().extras
    assert "input keyevent KEYCODE_WAKEUP" not in phone.commands

    phone.awake = False
    observation = env.observe()
    assert observation.extras["woke"] is True and phone.awake
    assert phone.commands.count("input keyevent KEYCODE_WAKEUP") == 1


@pytest.mark.parametrize("action", [Tap(x=540, y=1200), Type(text="hello")])
def test_an_action_chosen_before_the_screen_went_off_is_not_sent(action):
    phone = SleepyPhone()
    env = fake_android_env(phone)
    env.observe()
    phone.awake = False  # the model thinks past the screen timeout
    phone.commands.clear()
    result = env.execute(action)
    assert not result.ok
    assert result.message == (f"{action.kind} not done: the phone's screen had gone off; it is "
                              "on again now, so look at it before acting")
    assert phone.awake
    assert not [c for c in phone.commands if c.startswith(("input tap", "input text",
                                                             "am broadcast"))]
    # On the screen now on, the same action goes through.
    assert env.execute(action).ok
    assert phone.commands[-1].startswith(("input tap", "input text", "am broadcast"))


def test_a_screen_that_stays_off_is_a_clear_error():
    phone = SleepyPhone(stuck=True)
    phone.awake = False
    env = fake_android_env(phone)
    env.timeout_s = 0.3
    with pytest.raises(EnvError, match="the screen of fake-1 is off and did not come on after "
                                       "KEYCODE_WAKEUP in 0.3s"):
        env.observe()


class BusyScreenPhone(FakeAdbDevice):
    """A screen that never goes idle (a video): ``uiautomator dump`` answers after its own 10 s
    wait with its error; adb, given less time than that, times out first."""

    def shell(self, command: str, timeout: float | None = None) -> str:
        if command.startswith("uiautomator dump"):
            self.commands.append(command)
            if timeout is not None and timeout <= 10:
                raise TimeoutError("adb read timeout")
            return "ERROR: could not get idle state.\n"
        return super().shell(command, timeout)


def test_a_screen_that_never_goes_idle_is_not_taken_for_a_lost_phone():
    env = fake_android_env(BusyScreenPhone())
    with pytest.raises(EnvError) as failed:
        env.ui_tree()
    assert "could not get idle state" in str(failed.value)
    assert "not reachable" not in str(failed.value)
