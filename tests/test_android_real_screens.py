"""What a real phone's screen does that the virtual phone's does not: it goes off after its
timeout while the model thinks (the env turns it on before it looks, and does not send an
action chosen on a screen that has since gone off: it would land on the lock screen, or be
lost), it may never go idle for ``uiautomator dump`` (a video), and what ``dumpsys window``
says of it holds more than the live state."""

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


# `dumpsys window` as real phones write it: a section on the last ANR (kept for two hours)
# comes first with the window state of then; the live state follows.
LAST_ANR = """WINDOW MANAGER LAST ANR (dumpsys window lastanr)
  Application at fault: ActivityRecord{1b2c3d4 u0 com.instagram.android/.MainTabActivity t42}
Last ANR continued
WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)
    mCurrentFocus=Window{9f8e7d6 u0 com.instagram.android/com.instagram.android.MainTabActivity}
    mFocusedApp=ActivityRecord{1b2c3d4 u0 com.instagram.android/.MainTabActivity t42}

WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)
"""
LIVE = "    mCurrentFocus={focus}\n    mFocusedApp=ActivityRecord{{5e6f7a8 u0 {app} t57}}\n"


class WindowsPhone(FakeAdbDevice):
    def __init__(self, dump: str) -> None:
        super().__init__()
        self.dump = dump

    def _answer(self, command: str):
        answer = super()._answer(command)
        if command == "dumpsys window":
            answer.output = self.dump
        return answer


@pytest.mark.parametrize("focus, app, foreground", [
    ("Window{1a2b3c4 u0 com.android.settings/com.android.settings.Settings}",
     "com.android.settings/.Settings", ("com.android.settings", "com.android.settings.Settings")),
    # The lock screen (Android 12+; StatusBar before) over an app: not the app behind it.
    ("Window{7c1 u0 NotificationShade}", "com.example.bank/.MainActivity", (None, None)),
    ("Window{7c2 u0 Application Not Responding: com.example.bank}",
     "com.example.bank/.MainActivity", (None, None)),
    # Between two windows nothing is focused: the focused app.
    ("null", "com.example.bank/.MainActivity", ("com.example.bank", ".MainActivity")),
    # An app's dropdown or menu (AOSP titles a PopupWindow "PopupWindow:" + its hash in hex).
    ("Window{3d4 u0 PopupWindow:9c2e1d4}", "com.android.settings/.Settings",
     ("com.android.settings", ".Settings")),
])
def test_the_foreground_is_the_live_focus_not_the_last_anrs_nor_the_app_behind_a_lock_screen(
        focus, app, foreground):
    env = fake_android_env(WindowsPhone(LAST_ANR + LIVE.format(focus=focus, app=app)))
    del env.foreground  # the env's own reading, not the fake's
    assert env.foreground() == foreground


def test_the_density_is_the_one_the_user_set_over_the_physical_one():
    """Display size (Pixel) or Screen zoom (Samsung) sets an override, as `wm size` has one."""

    class ZoomedPhone(FakeAdbDevice):
        def _answer(self, command: str):
            answer = super()._answer(command)
            if command == "wm density":
                answer.output = "Physical density: 560\nOverride density: 480\n"
            elif command == "wm size":
                answer.output = "Physical size: 1440x3120\nOverride size: 1080x2340\n"
            return answer

    screen = fake_android_env(ZoomedPhone())._read_screen()
    assert (screen.width, screen.height, screen.density) == (1080, 2340, 480)


TWO_DISPLAYS = """WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)
  Display: mDisplayId=0 rootTasks=6
    mCurrentFocus={focus}
    mFocusedApp=ActivityRecord{{5e6f7a8 u0 com.example.bank/.MainActivity t57}}
  Display: mDisplayId=2 rootTasks=1
    mCurrentFocus=Window{{9c8b7a6 u0 com.example.files/com.example.files.MainActivity}}
    mFocusedApp=ActivityRecord{{4d3c2b1 u0 com.example.files/.MainActivity t61}}
WINDOW MANAGER WINDOWS (dumpsys window windows)
  mTopFocusedDisplayId=2
"""


@pytest.mark.parametrize("focus, foreground", [
    ("Window{1a2 u0 com.example.bank/com.example.bank.MainActivity}",
     ("com.example.bank", "com.example.bank.MainActivity")),
    ("Window{1f2 u0 NotificationShade}", (None, None)),
])
def test_with_a_second_display_the_foreground_is_the_one_the_screenshots_show(focus,
                                                                               foreground):
    """Android 10+ keeps a focus per display (a desktop mode's monitor, a cover screen):
    display 0's is the one screencap and input act on."""
    env = fake_android_env(WindowsPhone(LAST_ANR + TWO_DISPLAYS.format(focus=focus)))
    del env.foreground
    assert env.foreground() == foreground
