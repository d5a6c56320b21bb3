"""What the android env does to a phone on its own, outside the model's actions: a run without a
task presses nothing before the first action, and ADBKeyboard replaces the person's keyboard only
when it can give that keyboard back, which it does on close, also after an error or Ctrl-C."""

from __future__ import annotations

import pytest

from core.actions import Type
from envs.android import ADB_KEYBOARD
from tests.adb_fakes import LATIN_IME, FakeAdbDevice, fake_android_env

#: Commands that only read the phone's state.
READS = ("dumpsys", "getprop", "wm size", "wm density", "settings get", "screencap",
         "uiautomator dump", "ime list", "pm list")


def changes(device: FakeAdbDevice) -> list[str]:
    return [c for c in device.commands if not c.startswith(READS)]


def test_a_run_without_a_task_starts_on_the_screen_the_phone_shows():
    """`run GOAL --device SERIAL` without a task: the loop's reset observes; it pressed Home,
    taking the person's open app away before the model had seen it."""
    device = FakeAdbDevice()
    with fake_android_env(device) as env:
        env.reset(None)
    assert changes(device) == []


def test_a_task_builds_its_start_state_from_the_home_screen():
    device = FakeAdbDevice()
    seen: list[list[str]] = []
    fake_android_env(device).reset(lambda env: seen.append(list(device.commands)))
    assert seen == [["input keyevent KEYCODE_HOME"]]


def test_the_keyboard_is_given_back_where_dumpsys_does_not_name_it():
    """Newer phones' `dumpsys input_method` lacks mCurMethodId; the keyboard is read from the
    setting `ime set` writes, so close gives it back (it stayed on ADBKeyboard, which shows no
    keyboard on screen, so the person could not type)."""
    device = FakeAdbDevice()
    with fake_android_env(device) as env:
        assert env.execute(Type(text="caf\u00e9")).ok
        assert device.keyboard == ADB_KEYBOARD
    assert device.keyboard == LATIN_IME


def test_a_keyboard_that_cannot_be_read_is_not_replaced():
    device = FakeAdbDevice()
    device.keyboard = None  # `settings` answers "null", and dumpsys names none either
    with fake_android_env(device) as env:
        result = env.execute(Type(text="caf\u00e9"))
        assert not result.ok and "give it back" in result.message
        assert env.execute(Type(text="cafe")).ok  # ASCII needs no keyboard of ours
    assert changes(device) == ["input text cafe"]


def test_the_keyboard_is_given_back_after_ctrl_c():
    def ctrl_c_while_typing(command: str):
        return KeyboardInterrupt() if command.startswith("am broadcast") else None

    device = FakeAdbDevice(fail=ctrl_c_while_typing)
    with pytest.raises(KeyboardInterrupt), fake_android_env(device) as env:
        env.execute(Type(text="caf\u00e9"))
    assert device.keyboard == LATIN_IME


def test_the_keyboard_is_given_back_after_a_crash():
    device = FakeAdbDevice()
    with pytest.raises(ValueError), fake_android_env(device) as env:
        assert env.execute(Type(text="caf\u00e9")).ok
        raise ValueError("the policy failed")
    assert device.keyboard == LATIN_IME


def test_device_list_never_starts_an_adb_server(tmp_path, monkeypatch):
    """`device list` against a server that goes away after answering the reachability check
    (`adb kill-server` meanwhile): an error, not a server of adbutils' own left running."""
    import socket
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import envs.android
    from cli.app import app

    calls = tmp_path / "adb-calls"
    script = tmp_path / "adb"  # whatever adbutils runs as adb only writes down its arguments
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    script.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(script))
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    # The check reached it; by the time the devices are asked for, nothing listens there.
    monkeypatch.setattr(envs.android.socket, "create_connection",
                        lambda *args, **kwargs: SimpleNamespace(close=lambda: None))
    done = CliRunner().invoke(app, ["device", "list", "--adb-port", str(port)])
    assert done.exit_code == 2 and f"127.0.0.1:{port}" in done.output
    assert not calls.exists(), calls.read_text()


HANGUP = """
import os, signal, sys, time
from core.actions import Type
from runtime.stop_signals import sigterm_interrupts
from tests.adb_fakes import FakeAdbDevice, fake_android_env

if sys.argv[1] == "nohup":
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
device = FakeAdbDevice()
try:
    with fake_android_env(device) as env, sigterm_interrupts():
        assert env.execute(Type(text="caf\\u00e9")).ok
        os.kill(os.getpid(), signal.SIGHUP)  # the terminal closed
        time.sleep(0.5)
        print("ran on", device.keyboard)
except KeyboardInterrupt as exc:
    print(exc, "and the phone has", device.keyboard)
"""


@pytest.mark.parametrize(("how", "said"), [
    ("terminal", f"stopped by SIGHUP and the phone has {LATIN_IME}"),
    ("nohup", f"ran on {ADB_KEYBOARD}"),
])
def test_a_closed_terminal_stops_the_run_as_ctrl_c_does(how, said):
    """A closed terminal's SIGHUP ended the process at once: no close ran, and the phone kept
    ADBKeyboard. Under nohup (SIGHUP ignored) the run goes on."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run([sys.executable, "-c", HANGUP, how], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == said


def test_the_private_adb_server_leaves_the_users_emulators_alone():
    """`--device virtual` starts a private adb server; adb scans ports 5555-5585 for emulators
    (and USB for phones), so it attached the user's running emulator too, which two servers
    then fought over. It lists only the phone it connects."""
    import socket
    import time

    from envs.virtual_phone import VirtualPhone
    from envs.virtual_phone.adb_host import PrivateAdbServer
    from tests.conftest import require_tool

    require_tool("adb")
    require_tool("chromium")
    for port in range(5585, 5554, -2):  # an emulator's adb port that is free here
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
    with VirtualPhone(port=port) as emulator, VirtualPhone(port=0) as phone, \
            PrivateAdbServer() as adb:
        adb.connect(phone.serial)
        time.sleep(2)  # adb scans for emulators at start, and again every second or so
        listed = adb.run("devices").stdout.decode()
    assert phone.serial in listed
    assert f"emulator-{port - 1}" not in listed and emulator.serial not in listed


@pytest.mark.parametrize("device", [None, "emulator-5554"])
def test_a_run_says_which_phone_it_drives_when_none_was_named(monkeypatch, device):
    """Without --device a run drives the only phone attached: the console names it, so a person
    with a phone left plugged in learns which one is being tapped."""
    import io

    from rich.console import Console

    import envs.android
    from runtime.build import open_env
    from runtime.settings import RunSpec

    class OnePhone:
        def __init__(self, serial, adb_port):
            self.serial = serial or "R58M12ABCDE"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(envs.android, "AndroidEnv", OnePhone)
    out = io.StringIO()
    with open_env(RunSpec(goal="g", model="scripted", device=device),
                  Console(file=out, width=200)) as (env, named):
        assert named == device and isinstance(env, OnePhone)
    said = "android device R58M12ABCDE (the only one attached)" in out.getvalue()
    assert said is (device is None)
