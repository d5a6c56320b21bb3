"""An adb server that goes away mid-run is not replaced by a server the env starts itself.

adbutils runs ``adb start-server`` whenever it cannot reach the adb server. That starts a daemon
on the default port (or $ANDROID_ADB_SERVER_PORT) with the user's HOME, not the server the env
was told to use, and the daemon stays running after the run. The env's own retries wait for the
server it uses to come back; when it does not, the action fails with a clear error.
"""

from __future__ import annotations

import time

import pytest

from core.actions import Home, Tap, Type
from tests.conftest import require_tool

pytestmark = [pytest.mark.adb, pytest.mark.chromium]


def test_a_server_that_goes_away_is_not_replaced_by_one_the_env_starts(tmp_path, monkeypatch):
    require_tool("adb")
    require_tool("chromium")
    import envs.android as android
    from envs.virtual_phone.adb_host import connected_phone

    # Whatever adbutils runs as adb is this script, which only writes down how it was called
    # (the phone's private server runs the real adb, found on PATH).
    calls = tmp_path / "adb-calls"
    script = tmp_path / "adb"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    script.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(script))
    monkeypatch.setattr(android, "ADB_RETRY_DELAYS_S", (0.05, 0.1, 0.2))

    with connected_phone() as (phone, adb):
        env = android.AndroidEnv(serial=phone.serial, adb_port=adb.port, timeout_s=5)
        assert env.execute(Home()).ok
        adb.process.kill()
        adb.process.wait()
        start = time.monotonic()
        for action in (Tap(x=10, y=10), Type(text="hello there")):
            result = env.execute(action)
            assert not result.ok
            # The server is named, not the device, which may be fine.
            assert f"the adb server at 127.0.0.1:{adb.port} stopped" in result.message
            assert f"adb -P {adb.port} start-server" in result.message
            assert "unplugged" not in result.message
        assert time.monotonic() - start < 10
        env.close()
    assert not calls.exists(), calls.read_text()  # no `adb start-server`, nor anything else


def test_no_adb_server_at_the_port_says_how_to_start_one_there(tmp_path, monkeypatch):
    """`adb start-server` starts a server on adb's default port: the way out must name this
    one, as the message for a server that stops mid-run does."""
    import socket

    import envs.android as android
    from envs.base import EnvError

    script = tmp_path / "adb"  # whatever adbutils would run as adb does nothing
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(script))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EnvError, match=f"start it with `adb -P {port} start-server`"):
        android.AndroidEnv(adb_port=port, timeout_s=2)


def test_a_virtual_phone_whose_chromium_dies_goes_offline_and_the_env_says_it_is_gone():
    """Its tools failed one by one ("uiautomator: TargetClosedError"), which the gate's lookup
    read as an element it cannot inspect: the step was recorded as the gate's refusal. A phone
    whose screen is gone leaves adb, as a crashed device does: the env's next call is EnvGone."""
    require_tool("adb")
    require_tool("chromium")
    from agent.safety import ConfirmationGate, GateRules
    from envs.android import AndroidEnv
    from envs.base import EnvGone
    from envs.chromium import kill_chromium
    from envs.virtual_phone.adb_host import connected_phone
    from tests.probes import wait_until

    with connected_phone() as (phone, adb):
        env = AndroidEnv(serial=phone.serial, adb_port=adb.port, timeout_s=5)
        env.observe()
        kill_chromium(phone.call(_profile_folder))
        listed = lambda: adb.run("devices").stdout.decode()  # noqa: E731
        wait_until(lambda: f"{phone.serial}\tdevice" not in listed(),
                   what="the phone to go offline")
        with pytest.raises(EnvGone, match="is not reachable"):
            ConfirmationGate(GateRules(), env, "deny").sensitive(Tap(x=10, y=10))
        env.close()


async def _profile_folder(commands) -> str:
    return commands.display._temp.name
