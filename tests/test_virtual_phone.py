"""The virtual phone through the real adb CLI: the device as `adb` itself sees it."""

from __future__ import annotations

import io
import re
import struct
import time

import pytest
from PIL import Image

from envs.ui_tree import UiNode, parse_hierarchy
from tests.probes import wait_until

pytestmark = [pytest.mark.adb, pytest.mark.chromium]


@pytest.fixture(scope="module")
def phone(virtual_phone):
    return virtual_phone


def adb_shell(phone, *args: str, exec_out: bool = False) -> bytes:
    vphone, adb = phone
    result = adb.run("-s", vphone.serial, "exec-out" if exec_out else "shell", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def focus(phone) -> str:
    window = adb_shell(phone, "dumpsys window").decode()
    match = re.search(r"mCurrentFocus=Window\{\S+ u0 ([\w.]+)/", window)
    return match.group(1) if match else ""


def ui_nodes(phone) -> list[UiNode]:
    dump = adb_shell(phone, "uiautomator", "dump", "/dev/tty").decode()
    return list(parse_hierarchy(dump).walk())


def test_adb_lists_the_phone(phone):
    vphone, adb = phone
    listing = adb.run("devices", "-l").stdout.decode()
    line = rf"^{re.escape(vphone.serial)}\s+device .*model:vlagent_virtual_phone"
    assert re.search(line, listing, re.M)


def test_wm_size_and_density(phone):
    assert adb_shell(phone, "wm", "size") == b"Physical size: 1080x2400\n"
    assert adb_shell(phone, "wm", "density") == b"Physical density: 480\n"


def test_screencap_png_and_raw_show_the_same_pixels(phone):
    png = adb_shell(phone, "screencap", "-p", exec_out=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    assert image.size == (1080, 2400)
    raw = adb_shell(phone, "screencap", exec_out=True)
    width, height, fmt = struct.unpack_from("<3I", raw)
    assert (width, height, fmt) == (1080, 2400, 1)
    assert len(raw) == 16 + width * height * 4
    assert raw[16:] == image.convert("RGBA").tobytes()


def test_the_shell_is_a_real_sh(phone):
    # Quoting, arithmetic and pipes are the shell's; the tools are ordinary commands on PATH.
    assert adb_shell(phone, "echo $((6*7)) 'a  b' | tr a x") == b"42 x  b\n"
    command = "getprop ro.build.version.sdk; command -v input >/dev/null && echo found"
    assert adb_shell(phone, command) == b"34\nfound\n"
    assert b"interactive shells are not supported" in adb_shell(phone)


def test_input_tap_on_a_launcher_icon_opens_its_app(phone):
    for label, package in [("Notes", "com.vlagent.notes"), ("Settings", "com.vlagent.settings")]:
        adb_shell(phone, "input", "keyevent", "KEYCODE_HOME")
        wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")
        icon = next(n for n in ui_nodes(phone) if n.content_desc == label)
        x, y = icon.center
        adb_shell(phone, "input", "tap", str(x), str(y))
        wait_until(lambda: focus(phone) == package, what=f"{package} in front")


def test_tools_report_errors_like_a_device(phone):
    vphone, adb = phone
    result = adb.run("-s", vphone.serial, "shell", "monkey -p com.example.missing 1; echo rc=$?")
    assert b"No activities found" in result.stdout and b"rc=252" in result.stdout
    result = adb.run("-s", vphone.serial, "shell", "input keyevent NOT_A_KEY; echo rc=$?")
    assert b"unknown key" in result.stdout and b"rc=1" in result.stdout
    assert b"package:com.vlagent.flights\n" in adb_shell(phone, "pm", "list", "packages")
    assert adb_shell(phone, "ime list -s").split() == [
        b"com.vlagent.keyboard/.LatinIME", b"com.android.adbkeyboard/.AdbIME"]


def test_a_tool_whose_reader_goes_ends_quietly(phone):
    """As a device's screencap does: Python's BrokenPipeError traceback came out instead."""
    vphone, adb = phone
    result = adb.run("-s", vphone.serial, "shell", "screencap -p | head -c 8")
    assert result.stdout == b"\x89PNG\r\n\x1a\n", result.stdout[:200]
    assert b"Traceback" not in result.stderr + result.stdout


def test_the_app_an_icon_opens_is_in_front_before_the_next_command(phone):
    """The app a launcher icon's tap opens is in front when `input tap` returns, so the next
    command (Home, another app's start) wins: opened a moment later, apart from the tap, it
    came to the front over them in about one run in two."""
    adb_shell(phone, "vphone", "reset")
    icon = next(n for n in ui_nodes(phone) if n.content_desc == "Notes")
    tap = f"input tap {icon.center[0]} {icon.center[1]}"
    vphone, _ = phone

    async def tap_and_look(commands) -> str:  # no command between them
        await commands.display.tap(*icon.center)
        return commands.current_app().package

    assert vphone.call(tap_and_look) == "com.vlagent.notes"
    for then, last in [("input keyevent KEYCODE_HOME", "com.vlagent.launcher"),
                       ("am start -n com.vlagent.contacts/.ContactsActivity",
                        "com.vlagent.contacts")] * 4:
        adb_shell(phone, "vphone reset")
        adb_shell(phone, tap)
        adb_shell(phone, then)
        time.sleep(0.3)  # for an open that would come late
        assert focus(phone) == last, then


def test_uiautomator_dump_to_a_file(phone):
    output = adb_shell(phone, "uiautomator dump ui.xml && cat ui.xml").decode()
    assert output.startswith("UI hierchary dumped to: ui.xml\n<?xml")
    assert output.rstrip().endswith("</hierarchy>")


def test_back_and_home(phone):
    adb_shell(phone, "vphone", "reset")
    wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")
    adb_shell(phone, "monkey -p com.vlagent.contacts -c android.intent.category.LAUNCHER 1")
    wait_until(lambda: focus(phone) == "com.vlagent.contacts", what="contacts")
    ada = next(n for n in ui_nodes(phone)
               if n.resource_id == "contacts:contact-ada-lovelace")
    adb_shell(phone, "input", "tap", *map(str, ada.center))
    wait_until(lambda: any(n.text == "Phone: +1 555 0101" for n in ui_nodes(phone)),
             what="the contact page")
    # Back leaves the detail page first and stays in the app...
    adb_shell(phone, "input", "keyevent", "4")
    wait_until(lambda: any(n.resource_id == "contacts:add" for n in ui_nodes(phone)),
             what="the contact list")
    assert focus(phone) == "com.vlagent.contacts"
    # ...then leaves the app; Back on the launcher stays there.
    adb_shell(phone, "input", "keyevent", "KEYCODE_BACK")
    wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")
    adb_shell(phone, "input", "keyevent", "KEYCODE_BACK")
    assert focus(phone) == "com.vlagent.launcher"
    # Home from deep inside an app goes straight to the launcher.
    adb_shell(phone, "am start -n com.vlagent.flights/.SearchActivity")
    wait_until(lambda: focus(phone) == "com.vlagent.flights", what="flights")
    adb_shell(phone, "input", "keyevent", "3")
    wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")
    # The HOME intent reaches the launcher as well.
    adb_shell(phone, "monkey -p com.vlagent.messages 1")
    wait_until(lambda: focus(phone) == "com.vlagent.messages", what="messages")
    adb_shell(phone, "am start -a android.intent.action.MAIN -c android.intent.category.HOME")
    wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")


def test_settings_switches_change_state(phone):
    import json

    adb_shell(phone, "vphone reset com.vlagent.settings")
    adb_shell(phone, "am start -n com.vlagent.settings/.Settings")
    wait_until(lambda: focus(phone) == "com.vlagent.settings", what="settings")
    first = json.loads(adb_shell(phone, "vphone state com.vlagent.settings"))
    assert (first["wifi"], first["bluetooth"]) == (True, False)
    (switch,) = wait_until(lambda: [n for n in ui_nodes(phone)
                                  if n.resource_id == "settings:bluetooth"], what="switch")
    assert switch.class_name == "android.widget.Switch" and not switch.checked
    adb_shell(phone, "input", "tap", *map(str, switch.center))
    wait_until(lambda: json.loads(adb_shell(phone, "vphone state com.vlagent.settings"))["bluetooth"],
             what="bluetooth on")
    # pm clear restores the app's first state and, as on Android, stops it.
    assert adb_shell(phone, "pm clear com.vlagent.settings") == b"Success\n"
    assert json.loads(adb_shell(phone, "vphone state com.vlagent.settings")) == first
    assert focus(phone) == "com.vlagent.launcher"


def test_state_set_replaces_an_apps_state_and_the_app_shows_it(phone):
    import json

    adb_shell(phone, "am start -n com.vlagent.settings/.Settings")
    wait_until(lambda: focus(phone) == "com.vlagent.settings", what="settings")
    state = {"wifi": False, "bluetooth": True}
    adb_shell(phone, "vphone", "state", "set", "com.vlagent.settings", f"'{json.dumps(state)}'")
    assert json.loads(adb_shell(phone, "vphone state com.vlagent.settings")) == state
    # The open app held the old state, so it was stopped; opened again it shows the new one.
    assert focus(phone) == "com.vlagent.launcher"
    adb_shell(phone, "am start -n com.vlagent.settings/.Settings")
    (switch,) = wait_until(lambda: [n for n in ui_nodes(phone)
                                  if n.resource_id == "settings:bluetooth"], what="switch")
    assert switch.checked
    for bad in ("'[1, 2]'", "'{nope'"):
        out = adb_shell(phone, f"vphone state set com.vlagent.settings {bad}; echo rc=$?")
        assert out.decode().rstrip().endswith("rc=1"), out
    assert json.loads(adb_shell(phone, "vphone state com.vlagent.settings")) == state
    adb_shell(phone, "vphone reset com.vlagent.settings")


def test_several_phones_at_once(phone):
    from envs.virtual_phone import VirtualPhone

    vphone, adb = phone
    with VirtualPhone() as other:
        adb.connect(other.serial)
        assert other.port != vphone.port
        adb.run("-s", other.serial, "shell", "monkey -p com.vlagent.notes 1")
        adb.run("-s", vphone.serial, "shell", "input keyevent HOME")
        serials = {s: adb.run("-s", s, "shell", "getprop ro.serialno").stdout.strip()
                   for s in (vphone.serial, other.serial)}
        assert serials == {vphone.serial: f"vphone-{vphone.port}".encode(),
                           other.serial: f"vphone-{other.port}".encode()}
        assert other.foreground() == "com.vlagent.notes"
        assert vphone.foreground() == "com.vlagent.launcher"
    adb.run("disconnect", other.serial)


def test_closing_a_stream_kills_its_whole_command(phone, tmp_path):
    # `adb shell` killed mid-command: the host closes the stream and the phone must end the
    # command's children too (here a background subshell), not only its sh.
    import subprocess

    vphone, adb = phone
    marker = tmp_path / "still-running"
    command = f"(sleep 7.31; touch {marker}) & sleep 30.17"
    proc = subprocess.Popen([adb.adb, "-P", str(adb.port), "-s", vphone.serial, "shell", command],
                            env=adb.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running() -> list[bytes]:
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, check=True).stdout
        return [line for line in listing.splitlines()
                if b"sleep 7.31" in line or b"sleep 30.17" in line]

    wait_until(lambda: len(running()) >= 2, what="the command and its background child")
    proc.kill()
    proc.wait()
    wait_until(lambda: not running(), what="every process of the command to end")
    assert not marker.exists()


def test_a_taken_port_is_a_clear_error(phone):
    from envs.virtual_phone import VirtualPhone

    vphone, _ = phone
    with pytest.raises(RuntimeError, match="failed to start.*already in use"):
        VirtualPhone(port=vphone.port).start()
    assert adb_shell(phone, "wm", "size") == b"Physical size: 1080x2400\n"  # the first one lives


def test_tools_run_without_a_shell_answer_as_through_it(phone):
    # `| cat` sends a command through sh and the tool process; alone it runs inline.
    for command in ["dumpsys window", "wm size", "getprop ro.product.model", "vphone apps",
                    "ime list -s", "input keyevent NOT_A_KEY; echo rc=$?",
                    "monkey -p com.example.missing 1; echo X4EXIT:$?"]:
        assert adb_shell(phone, command) == adb_shell(phone, f"{command} | cat"), command
    assert adb_shell(phone, "uiautomator dump inline.xml") == (
        b"UI hierchary dumped to: inline.xml\n")
    assert adb_shell(phone, "cat inline.xml").startswith(b"<?xml")


def test_vphone_frame_sends_a_still_screen_once(phone):
    from envs.still_frames import split_frame

    vphone, _ = phone
    adb_shell(phone, "input keyevent HOME")
    frame, png = split_frame(adb_shell(phone, "vphone frame", exec_out=True))
    assert frame.still and frame.version and frame.package == "com.vlagent.launcher"
    shot = Image.open(io.BytesIO(adb_shell(phone, "screencap", "-p", exec_out=True)))
    assert Image.open(io.BytesIO(png)).tobytes() == shot.convert("RGB").tobytes()
    # Unchanged: the header again and no PNG.
    assert split_frame(adb_shell(phone, f"vphone frame --since {frame.version}",
                                 exec_out=True)) == (frame, b"")
    # The page changing by itself (no input) is a new version and a new frame.
    vphone.call(lambda c: c.display.evaluate(
        "() => { document.body.style.background = 'rgb(255, 0, 0)'; }"))
    changed, red = split_frame(adb_shell(phone, f"vphone frame --since {frame.version}",
                                         exec_out=True))
    assert changed.version != frame.version and red and red != png
    assert Image.open(io.BytesIO(red)).getpixel((2, 1200)) == (255, 0, 0)
    adb_shell(phone, "vphone reset")
    for bad in ("--quiet 5", "--quiet-ms", "--timeout-ms soon"):
        out = adb_shell(phone, f"vphone frame {bad}; echo rc=$?").decode()
        assert "vphone: " in out and out.rstrip().endswith("rc=1"), out


def test_a_stream_closed_while_its_command_starts_ends_the_command():
    """The host's CLSE can arrive while the phone is still starting the command (a loaded
    machine): the command must end then, not run on with nobody reading it."""
    import asyncio
    import signal as signals

    from envs.virtual_phone.protocol import A_CLSE, A_OPEN
    from envs.virtual_phone.transport import AdbTransport

    class Writer:
        def write(self, data: bytes) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        async def drain(self) -> None:
            pass

    async def scenario() -> int:
        started, release, spawned = asyncio.Event(), asyncio.Event(), []

        async def spawn(command: str) -> asyncio.subprocess.Process:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            spawned.append(process)
            started.set()
            await release.wait()  # the host's CLSE comes before the stream holds its process
            return process

        transport = AdbTransport(None, Writer(), spawn, {}, [])
        transport._handle(A_OPEN, 7, 0, b"shell:sleep 30.29\0")
        await started.wait()
        (stream,) = transport.streams.values()
        transport._handle(A_CLSE, 7, stream.local_id, b"")
        release.set()
        await asyncio.wait_for(stream.task, 10)
        return await asyncio.wait_for(spawned[0].wait(), 10)

    assert asyncio.run(scenario()) == -signals.SIGKILL


class Interrupted(BaseException):
    """What a Ctrl-C raises in the main thread, without pytest taking it for one."""


@pytest.mark.parametrize("after_s, driver", [(0.05, "alive"), (0.5, "alive"), (0.5, "gone")])
def test_a_phone_interrupted_while_it_starts_stops_and_leaves_nothing(tmp_path, monkeypatch,
                                                                      after_s, driver):
    """A bench worker stopped while its phone starts (Ctrl-C, the bench gone) ends the phone's
    thread and its chromium, and removes their folders, before the worker exits. A terminal's
    Ctrl-C also ends Playwright's driver, whose answer to the launch then never comes: the
    phone's start was waited for, 30 s, before the run could exit."""
    import asyncio
    import signal
    import tempfile
    import threading

    from envs.virtual_phone import VirtualPhone
    from envs.virtual_phone.display import PhoneDisplay

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if driver == "gone":
        async def never_answered(self, on_state, on_open) -> None:
            await asyncio.Event().wait()

        monkeypatch.setattr(PhoneDisplay, "start", never_answered)

    def interrupt(signum, frame):
        raise Interrupted

    before = set(threading.enumerate())  # the module's own phone runs meanwhile
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, after_s)
        with pytest.raises(Interrupted):
            VirtualPhone(port=0).start()  # chromium alone takes longer than that to start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not [t.name for t in set(threading.enumerate()) - before
                if t.name.startswith("vphone-")]
    assert list(tmp_path.iterdir()) == []


def test_a_stopped_phone_starts_again():
    from envs.virtual_phone import VirtualPhone

    phone = VirtualPhone(port=0)
    phone.stop()  # before it ever started: nothing to stop, and no reason not to start later
    with phone:
        assert phone.foreground() == "com.vlagent.launcher"
    with phone:
        assert phone.foreground() == "com.vlagent.launcher"


def test_an_app_left_with_home_comes_back_as_it_was_left(phone):
    """As an Android task does: Home leaves Contacts on Ada's page, and its launcher icon (or
    `am start`) brings that page back, where Back still goes to the list. Back from the list
    leaves the app running (Android 12 and later move a root activity to the background): it
    comes back as it was left; from an app opened over it, Back comes back to it. An app
    force-stopped, cleared (`pm clear`) or reset starts afresh, at its list."""
    def showing_ada() -> bool:
        return any(n.text == "Phone: +1 555 0101" for n in ui_nodes(phone))

    def open_ada() -> None:
        adb_shell(phone, "monkey -p com.vlagent.contacts 1")
        wait_until(lambda: focus(phone) == "com.vlagent.contacts", what="contacts")
        ada = wait_until(lambda: next((n for n in ui_nodes(phone)
                                       if n.resource_id == "contacts:contact-ada-lovelace"),
                                      None), what="Ada's row")
        adb_shell(phone, "input", "tap", *map(str, ada.center))
        wait_until(showing_ada, what="Ada's page")

    def home() -> None:
        adb_shell(phone, "input", "keyevent", "KEYCODE_HOME")
        wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")

    def on_the_list() -> bool:
        return any(n.resource_id == "contacts:add" and n.bounds[3] > n.bounds[1]
                   for n in ui_nodes(phone)) and not showing_ada()

    adb_shell(phone, "vphone", "reset")
    open_ada()
    home()
    icon = next(n for n in ui_nodes(phone) if n.content_desc == "Contacts")
    adb_shell(phone, "input", "tap", *map(str, icon.center))
    wait_until(lambda: focus(phone) == "com.vlagent.contacts" and showing_ada(),
               what="Ada's page again")
    home()
    adb_shell(phone, "am start -n com.vlagent.contacts/.ContactsActivity")
    wait_until(showing_ada, what="Ada's page again, by am start")
    adb_shell(phone, "input", "keyevent", "KEYCODE_BACK")
    wait_until(on_the_list, what="the list, Back from Ada's page")
    vphone, _ = phone
    # A mark in the app's page, which only the same page (the app kept running) still holds.
    marked = lambda: vphone.call(lambda c: c.display.evaluate(  # noqa: E731
        "() => window.vphoneMark === 1"))
    for stop in ("input keyevent KEYCODE_BACK", "am force-stop com.vlagent.contacts",
                 "vphone reset com.vlagent.contacts", "pm clear com.vlagent.contacts",
                 "am start -S -n com.vlagent.contacts/.ContactsActivity"):
        open_ada()
        vphone.call(lambda c: c.display.evaluate("() => { window.vphoneMark = 1; }"))
        if stop != "input keyevent KEYCODE_BACK":
            home()
        else:  # Back twice: to the list, then out of the app
            adb_shell(phone, "input keyevent KEYCODE_BACK")
            wait_until(on_the_list, what="the list")
        adb_shell(phone, stop)
        if not stop.startswith("am start"):
            wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")
            adb_shell(phone, "monkey -p com.vlagent.contacts 1")
        wait_until(lambda: focus(phone) == "com.vlagent.contacts" and on_the_list(),
                   what=f"the list after {stop}")
        assert marked() == (stop == "input keyevent KEYCODE_BACK"), stop
    # An app started over another one: Back from its first page shows the one under it, as it
    # was left, and Back from that one the launcher.
    open_ada()
    adb_shell(phone, "am start -n com.vlagent.notes/.NotesActivity")
    wait_until(lambda: focus(phone) == "com.vlagent.notes", what="notes")
    adb_shell(phone, "input keyevent KEYCODE_BACK")
    wait_until(lambda: focus(phone) == "com.vlagent.contacts" and showing_ada(),
               what="Ada's page under notes")
    adb_shell(phone, "input keyevent KEYCODE_BACK")
    wait_until(on_the_list, what="the list")
    adb_shell(phone, "input keyevent KEYCODE_BACK")
    wait_until(lambda: focus(phone) == "com.vlagent.launcher", what="the launcher")


def test_a_password_fields_text_is_masked_in_the_dump(phone):
    """As Android's accessibility reports a password field: one dot per character, never the
    characters (a dump is recorded with the observation and read by the safety gate)."""
    vphone, _ = phone
    adb_shell(phone, "vphone reset")
    vphone.call(lambda c: c.display.evaluate(
        "() => { const i = document.createElement('input'); i.type = 'password'; "
        "i.value = 'hunter22'; i.setAttribute('aria-label', 'PIN'); "
        "document.body.prepend(i); document.body.insertAdjacentHTML('afterbegin', "
        "'<a href=\"#x\" type=\"password\" id=\"odd\">a link</a>'); }"))
    try:
        nodes = ui_nodes(phone)  # (a link typed "password" is no field to mask: no error)
    finally:
        vphone.call(lambda c: c.display.evaluate(
            "() => { document.querySelector('input[type=password]').remove(); "
            "document.getElementById('odd').remove(); }"))
    node = next(n for n in nodes if n.content_desc == "PIN")
    assert node.password and node.text == "\u2022" * 8
    link = next(n for n in nodes if n.resource_id == "odd")
    assert not link.password and link.text == "a link"


def test_am_start_knows_each_apps_activity_as_android_does(phone):
    """An activity the package does not have is refused as Android refuses it (it started the
    app); the full class name and `-p PKG` (its main activity) start it."""
    vphone, adb = phone
    missing = adb.run("-s", vphone.serial, "shell",
                      "am start -n com.vlagent.notes/.MainActivity; echo rc=$?")
    assert b"Error: Activity class {com.vlagent.notes/com.vlagent.notes.MainActivity} does not " \
           b"exist." in missing.stdout and b"rc=255" in missing.stdout
    assert focus(phone) != "com.vlagent.notes"
    for start in ("am start -n com.vlagent.notes/com.vlagent.notes.NotesActivity",
                  "am start -p com.vlagent.contacts -a android.intent.action.MAIN"):
        adb_shell(phone, start)
        package = start.split()[3].split("/")[0]
        wait_until(lambda: focus(phone) == package, what=start)
    adb_shell(phone, "vphone reset")
