"""A phone the adb server lists but cannot use (the "Allow USB debugging?" dialog not answered
yet, or no permission on its USB device) is named with what to do, not taken for no phone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import envs.android
from cli.app import app
from envs.android import AndroidEnv
from envs.base import EnvError

SERIAL = "R58M12ABCDE"


def listed(state: str) -> list[SimpleNamespace]:
    # As adbutils reads `host:devices-l`: the state is the line's second word, so adb's
    # "no permissions (missing udev rules? ...)" comes as "no".
    return [SimpleNamespace(serial=SERIAL, state=state, tags={})]


@pytest.mark.parametrize("state, said", [
    ("unauthorized", f'{SERIAL} is unauthorized (accept "Allow USB debugging?" on its screen)'),
    ("no", f"{SERIAL} is no permissions (this user may not open its USB device: add a udev rule"
           " for it, or join the plugdev group)"),
])
def test_a_listed_phone_that_is_not_ready_is_named_with_what_to_do(monkeypatch, state, said):
    monkeypatch.setattr(envs.android, "list_devices", lambda client: listed(state))
    env = AndroidEnv.__new__(AndroidEnv)
    env._client, env._adb_port = None, 5037
    with pytest.raises(EnvError) as without_serial:
        env._pick_serial(None, "127.0.0.1:5037")
    assert str(without_serial.value) == \
        f"no Android device is ready at the adb server at 127.0.0.1:5037: {said}"
    with pytest.raises(EnvError) as with_serial:
        env._pick_serial(SERIAL, "127.0.0.1:5037")
    assert str(with_serial.value) == f"device {said}, so it is not ready"


def test_device_list_spells_out_a_state_adbutils_cut_short(monkeypatch):
    monkeypatch.setattr(envs.android, "list_devices", lambda client: listed("no"))
    done = CliRunner().invoke(app, ["device", "list"], env={"COLUMNS": "120"})
    assert done.exit_code == 0, done.output
    row = next(line for line in done.output.splitlines() if SERIAL in line)
    assert "no permissions" in row
