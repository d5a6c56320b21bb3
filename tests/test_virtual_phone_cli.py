"""`agent_cli.py device virtual` and `device list` as a user runs them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.adb, pytest.mark.chromium]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_device_virtual_runs_until_stopped_and_device_list_shows_it(stop):
    """Ctrl-C, or SIGTERM as `timeout`, systemd and `docker stop` send, stops the phone and
    removes its folder (SIGTERM used to end the process without either)."""
    require_tool("adb")
    require_tool("chromium")
    from envs.virtual_phone.adb_host import PrivateAdbServer, free_port

    # Its own temporary folder, short: chromium's socket path in it must fit 108 bytes.
    tmp_path = Path(tempfile.mkdtemp(prefix="vp-"))
    port = free_port()
    cli = subprocess.Popen(
        [sys.executable, str(ROOT / "agent_cli.py"), "device", "virtual", "--port", str(port),
         "--no-adbkeyboard"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        with PrivateAdbServer() as adb:
            serial = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while b"connected" not in adb.run("connect", serial).stdout:
                assert cli.poll() is None, cli.stdout.read()
                assert time.monotonic() < deadline, "the phone never accepted adb connect"
                time.sleep(0.2)
            adb.connect(serial)
            assert adb.run("-s", serial, "shell", "wm size").stdout == b"Physical size: 1080x2400\n"
            # --no-adbkeyboard: only the plain keyboard is installed.
            assert adb.run("-s", serial, "shell", "ime list -s").stdout.split() == [
                b"com.vlagent.keyboard/.LatinIME"]
            # The server's port as adb itself picks it (as `run` does): from the environment.
            listing = subprocess.run(
                [sys.executable, str(ROOT / "agent_cli.py"), "device", "list"],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
                env={**os.environ, "ANDROID_ADB_SERVER_PORT": str(adb.port)},
            )
            assert listing.returncode == 0, listing.stderr
            assert serial in listing.stdout and "vlagent_virtual_phone" in listing.stdout
            assert list(tmp_path.glob("vphone-*"))  # its apps' storage, while it runs
            cli.send_signal(stop)
            out, _ = cli.communicate(timeout=30)
            assert cli.returncode == 0, out
            assert f"listening on {serial}" in out and "virtual phone stopped" in out
            # Whole on one line, in a log too, where a script greps the address.
            assert any(f"attach it with adb connect {serial};" in line
                       for line in out.splitlines()), out
            assert not list(tmp_path.glob("vphone-*"))
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_device_virtual_whose_chromium_dies_says_so_and_exits():
    """It went on "listening" with every tool failing; now the phone goes offline, as a crashed
    device does, and the command says why and exits 1."""
    require_tool("adb")
    require_tool("chromium")
    from envs.chromium import kill_chromium
    from envs.virtual_phone.adb_host import free_port

    tmp_path = Path(tempfile.mkdtemp(prefix="vp-"))
    cli = subprocess.Popen(
        [sys.executable, str(ROOT / "agent_cli.py"), "device", "virtual", "--port",
         str(free_port()), "--no-adbkeyboard"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "200"},
    )
    try:
        said = next(line for line in cli.stdout if "listening on" in line)  # it has started
        (profile,) = tmp_path.glob("vlagent-chromium-*/profile")
        kill_chromium(str(profile.parent))
        out, _ = cli.communicate(timeout=30)
        out = said + out
        assert cli.returncode == 1, out
        assert "the virtual phone went offline: its chromium closed or crashed" in out
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_device_list_without_a_server_says_so():
    from envs.virtual_phone.adb_host import free_port

    port = free_port()
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent_cli.py"), "device", "list", "--adb-port", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    # as `run` ends on a device it cannot use: status 2, one error line on stderr
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and "cannot reach the adb server" in result.stderr
    # Started on the port asked about: a plain `adb start-server` takes adb's default one.
    assert f"start it with `adb -P {port} start-server`" in " ".join(result.stderr.split())
    # A server on another machine is started there, listening beyond its localhost.
    result = subprocess.run(
        [sys.executable, str(ROOT / "agent_cli.py"), "device", "list", "--adb-host",
         "192.0.2.1", "--adb-port", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f"start it on 192.0.2.1 with `adb -a -P {port} nodaemon server`"
            in " ".join(result.stderr.split()))
