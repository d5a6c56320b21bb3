"""A phone that lets adb inject no input (Xiaomi, Redmi and POCO phones until "USB debugging
(Security settings)" is on): ``input`` prints a SecurityException, with a non-zero exit on most
builds and 0 on some. Before, the first case failed each action with a Java stack trace and no
hint, and the run went on failing to its step limit; the second passed as done."""

from __future__ import annotations

import pytest

from core.actions import Key, Swipe, Tap, Type
from envs.base import EnvError
from tests.adb_fakes import FakeAdbDevice, fake_android_env

REFUSED = ("Exception occurred while executing 'tap':\njava.lang.SecurityException: Injecting "
           "input events requires the caller (or the source of the instrumentation, if any) to "
           "have the INJECT_EVENTS permission.\n\tat com.android.server.input.InputManagerService"
           ".injectInputEventToTarget(InputManagerService.java:912)\n")
OLDER = ("java.lang.SecurityException: Injecting to another application requires INJECT_EVENTS "
         "permission\n\tat android.os.Parcel.createException(Parcel.java:2075)\n")
HINT = ("the phone lets adb inject no input (INJECT_EVENTS); on a Xiaomi, Redmi or POCO phone "
        "turn on Developer options > USB debugging (Security settings), then start again")


@pytest.mark.parametrize("exit_code, output", [(255, REFUSED), (1, OLDER), (0, OLDER)])
@pytest.mark.parametrize("action", [Tap(x=540, y=1200), Swipe(x=540, y=1800, x2=540, y2=600),
                                    Key(key="back"), Type(text="hello")])
def test_refused_input_fails_the_action_and_ends_the_episode_with_what_to_turn_on(
        exit_code, output, action):
    device = FakeAdbDevice(
        adb_keyboard=False,
        fail=lambda command: (exit_code, output) if command.startswith("input ") else None)
    env = fake_android_env(device)
    result = env.execute(action)
    assert not result.ok
    assert result.message.endswith(HINT), result.message
    assert "at android" not in result.message and "hello" not in result.message
    with pytest.raises(EnvError) as observed:  # the loop ends the episode with this reason
        env.observe()
    assert str(observed.value) == result.message


def test_input_that_arrives_leaves_the_env_usable():
    device = FakeAdbDevice()
    env = fake_android_env(device)
    assert env.execute(Tap(x=540, y=1200)).ok
    assert env.observe().size == (1080, 2400)
