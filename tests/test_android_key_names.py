"""Key names the shared vocabulary (envs/keys.py) knows, pressed on a phone, and key numbers.

``ins`` and ``capslock`` are names of envs.keys that the android env refused ("has no key"),
though Android has KEYCODE_INSERT and KEYCODE_CAPS_LOCK (``insert`` and ``caps_lock`` worked).
A key number must be ASCII digits: ``\\d`` also matched other scripts' digits ("٦٧"), which went
to the device's ``input keyevent`` as written, where Java's parseInt reads them as 67 (DEL).
"""

from __future__ import annotations

import pytest

from core.actions import Key
from tests.adb_fakes import FakeAdbDevice, fake_android_env


def _keyevents(device: FakeAdbDevice) -> list[str]:
    return [c for c in device.commands if c.startswith("input keyevent")]


@pytest.mark.parametrize(("key", "keycode"), [
    ("ins", "KEYCODE_INSERT"), ("insert", "KEYCODE_INSERT"), ("Insert", "KEYCODE_INSERT"),
    ("capslock", "KEYCODE_CAPS_LOCK"), ("CapsLock", "KEYCODE_CAPS_LOCK"),
    ("caps_lock", "KEYCODE_CAPS_LOCK"),
    ("67", "67"), ("KEYCODE_DEL", "KEYCODE_DEL"), ("enter", "KEYCODE_ENTER"),
])
def test_key_names_reach_the_device_as_android_names_them(key, keycode):
    device = FakeAdbDevice()
    result = fake_android_env(device).execute(Key(key=key))
    assert result.ok, result.message
    assert _keyevents(device) == [f"input keyevent {keycode}"]


@pytest.mark.parametrize("key", ["\u0666\u0667", "\uff16\uff17", "\u0967\u0966"])
def test_digits_of_other_scripts_are_not_key_numbers(key):
    device = FakeAdbDevice()
    fake_android_env(device).execute(Key(key=key))
    assert _keyevents(device) == []
    assert all(c.isascii() for c in device.commands)


def test_every_key_the_env_sends_is_one_the_virtual_phone_takes_by_name_and_number():
    """A trajectory recorded on a real phone replays on the virtual one: each key the env
    offers (F5, paste, caps lock, notification...) is an Android key the virtual phone's
    `input keyevent` takes, as a real phone's does, by name and by number; it refused 47."""
    from envs.android import CANONICAL_KEYCODES, PHONE_KEYCODES
    from envs.android_keycodes import ADB_KEY_NAMES, KEYCODES
    from envs.virtual_phone.keycodes import key_name

    for key in sorted({*PHONE_KEYCODES, *CANONICAL_KEYCODES, *ADB_KEY_NAMES}):
        device = FakeAdbDevice()
        assert fake_android_env(device).execute(Key(key=key)).ok, key
        [sent] = [c.removeprefix("input keyevent ") for c in _keyevents(device)]
        name = key_name(sent)
        assert key_name(str(KEYCODES[name])) == name, key
