"""One process drives one private Xvfb after another (a bench runs its desktop episodes so, each on
a display of its own), including a new Xvfb that reuses the number of one that is gone.

Apart from tests/test_desktop_env.py, whose env stays open for its whole module: while one is open,
an env on another display is refused (tested there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.actions import Click, Move, Type
from envs.base import EnvError
from envs.desktop import DesktopEnv, serves_xwayland
from envs.xauthority import FAMILY_WILD, packed
from envs.xvfb import Xvfb
from tests.conftest import require_tool
from tests.test_desktop_env import mouse_location


def test_envs_on_one_display_after_another_drive_their_own() -> None:
    require_tool("xvfb")
    require_tool("xdotool")
    for number, size in enumerate([(320, 240), (400, 300), (360, 200)]):
        with Xvfb(*size) as display, DesktopEnv(display=display.display,
                                                xauthority=display.xauthority) as env:
            assert env.capture().size == size
            x, y = 30 + 20 * number, 40 + 10 * number
            assert env.execute(Move(x=x, y=y)).ok
            assert mouse_location(display) == (x, y)


def test_a_private_display_admits_only_clients_that_hold_its_cookie() -> None:
    require_tool("xvfb")
    require_tool("xdotool")
    with Xvfb(320, 240) as display:
        assert mouse_location(display) == (160, 120)  # with the display's XAUTHORITY
        base = {"PATH": os.environ["PATH"], "DISPLAY": display.display}
        for xauthority in (os.devnull, str(Path(display.xauthority).with_name("other"))):
            refused = subprocess.run(["xdotool", "getmouselocation"], capture_output=True,
                                     text=True, env={**base, "XAUTHORITY": xauthority})
            assert refused.returncode != 0 and "Authorization required" in refused.stderr
        # python-xlib (pyautogui's X client) finds its entry: it warns on a file without one.
        probe = ("from Xlib.display import Display; d = Display(); "
                 "print(d.screen().width_in_pixels)")
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env={**base, "XAUTHORITY": display.xauthority}, check=True)
        assert (out.stdout.strip(), out.stderr) == ("320", "")


def _wild(entries) -> bytes:
    """The container recipe's copy of a display's cookies: each entry for any host."""
    return b"".join(packed((FAMILY_WILD, b"container", *rest)) for _, _, *rest in entries)


def test_a_cookie_for_any_host_opens_the_display_as_it_does_for_other_x_programs(
        tmp_path, monkeypatch) -> None:
    """The usual recipe for X programs in a container writes the display's cookie for any host
    (FamilyWild): xdotool and mss took it, while pyautogui's python-xlib, which matches hosts
    only, refused the display ("Authorization required")."""
    require_tool("xvfb")
    require_tool("xdotool")
    from Xlib.xauth import Xauthority

    with Xvfb(320, 240) as display:
        entries = Xauthority(display.xauthority).entries
        wild = tmp_path / "Xauthority"
        wild.write_bytes(_wild(entries))
        before = set(Path(tempfile.gettempdir()).glob("vlagent-xauth-*"))
        with DesktopEnv(display=display.display, xauthority=str(wild)) as env:
            assert env.capture().size == (320, 240)
            assert env.execute(Move(x=50, y=60)).ok
            assert mouse_location(display) == (50, 60)
            assert env.execute(Type(text="ok")).ok  # the typist's own connection
            assert os.environ["XAUTHORITY"] == str(wild)  # for the programs a run starts
        assert set(Path(tempfile.gettempdir()).glob("vlagent-xauth-*")) == before
        # Found as ~/.Xauthority, with $XAUTHORITY unset: unset again after, not left naming
        # the removed copy (the next env, and every X program started, failed).
        monkeypatch.setenv("HOME", str(tmp_path))
        wild.rename(tmp_path / ".Xauthority")
        monkeypatch.delenv("XAUTHORITY")
        for _ in range(2):
            with DesktopEnv(display=display.display) as env:
                assert env.capture().size == (320, 240)
            assert "XAUTHORITY" not in os.environ
        # The host's own entry before a stale one for any host: the first is the one X
        # programs send, as libXau reads the file.
        stale = [(family, address, number, name, bytes(16)) for family, address, number, name, _
                 in entries]
        (tmp_path / ".Xauthority").write_bytes(b"".join(map(packed, entries)) + _wild(stale))
        with DesktopEnv(display=display.display) as env:
            assert env.capture().size == (320, 240)


@pytest.mark.parametrize("display", [":77.1", "localhost:12.2"])
def test_a_second_x_screen_is_refused_before_anything_is_done_on_it(display) -> None:
    """Screenshots and pyautogui's size took the screen named, while XTest moved the pointer on
    screen 0: every click landed on another screen than the one the model saw."""
    base = display.rsplit(".", 1)[0]
    with pytest.raises(EnvError, match=rf"display {display} is X screen \d of {base}, and the "
                                       rf"desktop env drives a display's screen 0 only; give "
                                       rf"{base}\.0"):
        DesktopEnv(display=display)


def _server(extensions: list[str], outputs: list[str]) -> SimpleNamespace:
    """A python-xlib display of a server with these extensions and RandR output names."""
    resources = SimpleNamespace(outputs=list(range(len(outputs))), config_timestamp=0)
    root = SimpleNamespace(xrandr_get_screen_resources=lambda: resources)
    return SimpleNamespace(
        list_extensions=lambda: extensions, has_extension=lambda name: name in extensions,
        screen=lambda: SimpleNamespace(root=root),
        xrandr_get_output_info=lambda output, stamp: SimpleNamespace(name=outputs[output]))


@pytest.mark.parametrize("server, xwayland", [
    (_server(["XTEST", "RANDR", "XWAYLAND"], ["XWAYLAND0"]), True),  # Xwayland 21.1 and later
    (_server(["XTEST", "RANDR"], ["XWAYLAND0", "XWAYLAND1"]), True),  # before: its outputs
    (_server(["XTEST", "RANDR"], ["screen"]), False),  # Xvfb
    (_server(["XTEST", "RANDR"], ["eDP-1", "HDMI-1"]), False),  # Xorg
    (_server(["XTEST"], []), False),  # no RandR
])
def test_xwayland_is_told_by_the_server_itself(server, xwayland) -> None:
    assert serves_xwayland(server) is xwayland


def test_an_action_on_a_dead_x_server_fails_with_a_reason() -> None:
    require_tool("xvfb")
    with Xvfb(320, 240) as display, DesktopEnv(display=display.display,
                                               xauthority=display.xauthority) as env:
        display._process.kill()
        display._process.wait()
        for action in (Move(x=10, y=10), Click(x=10, y=10), Type(text="hi")):
            result = env.execute(action)
            assert not result.ok and f"the X display {display.display} is gone" in result.message


def test_an_env_that_fails_to_open_lets_the_next_one_use_another_display(monkeypatch) -> None:
    import envs.desktop
    from envs.base import EnvError

    require_tool("xvfb")
    require_tool("xdotool")

    def no_typist(display):
        raise EnvError(f"cannot open X display {display} for typing: refused")

    with Xvfb(320, 240) as first, Xvfb(400, 300) as second:
        monkeypatch.setattr(envs.desktop, "X11Typist", no_typist)
        with pytest.raises(EnvError, match="for typing"):
            DesktopEnv(display=first.display, xauthority=first.xauthority)
        monkeypatch.undo()
        with DesktopEnv(display=second.display, xauthority=second.xauthority) as env:
            assert env.capture().size == (400, 300)


def test_a_killed_desktop_run_leaves_neither_its_xvfb_nor_its_task_programs(
        tmp_path, monkeypatch) -> None:
    """SIGKILL runs no cleanup: the kernel stops the run's private Xvfb and the task's editor
    (PR_SET_PDEATHSIG), as it does the virtual phone's adb server. Their temporary folders stay
    until the next process makes folders of the same kinds."""
    import json
    import signal
    import tempfile
    import time

    from envs.temp_folders import TempFolder
    from tests.proc_table import command, descendants

    require_tool("xvfb")
    require_tool("xdotool")
    wait = '*FUNCTION*: Wait *ARGS*: {"seconds": 0.5}'
    script = tmp_path / "replies.jsonl"
    script.write_text("".join(json.dumps({"response": wait}) + "\n" for _ in range(200)))
    temp = tmp_path / "tmp"
    temp.mkdir()
    run = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parent.parent / "agent_cli.py"), "run",
         "--env", "desktop", "--display", "new", "--task", "desktop/editor-write-save",
         "--model", f"replay:{script}", "--max-steps", "200", "--out", str(tmp_path / "runs")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(temp)})
    helpers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(helpers) < 2 and time.monotonic() < deadline:
            assert run.poll() is None, "the run ended before it could be killed"
            helpers = [p for p in descendants(run.pid)
                       if command(p).split(" ")[0].rsplit("/", 1)[-1] in ("Xvfb", "mousepad")]
            time.sleep(0.1)
        assert len(helpers) == 2, "the run did not start its Xvfb and editor within 60 s"
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        deadline = time.monotonic() + 10
        while any(command(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [command(p) for p in helpers] == ["", ""]
        left = sorted(p.name.split("-")[1] for p in temp.iterdir() if p.is_dir())
        assert left == ["desktop", "xvfb"]
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        with Xvfb(), TempFolder("vlagent-desktop-"):
            assert len(list(temp.iterdir())) == 4  # these two, and their locks
        assert list(temp.iterdir()) == []
    finally:
        if run.poll() is None:
            run.kill()
        for pid in helpers:
            if command(pid):
                os.kill(pid, signal.SIGKILL)
