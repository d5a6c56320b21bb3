"""AndroidEnv against the virtual phone through a private adb server (real adb, real adbutils)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.actions import Back, Enter, Home, Key, LongPress, OpenApp, Scroll, Swipe, Tap, Type
from envs.base import EnvError
from tests.conftest import require_tool
from tests.probes import wait_until

pytestmark = [pytest.mark.adb, pytest.mark.chromium]


@pytest.fixture(scope="module")
def attached(virtual_phone):
    return virtual_phone


@pytest.fixture(scope="module")
def env(attached):
    from envs.android import AndroidEnv

    phone, adb = attached
    with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        yield env


def state(env, package: str) -> dict:
    return json.loads(env.shell(f"vphone state {package}"))


def tap_id(env, resource_id: str) -> None:
    """Tap the centre of the element with this resource-id, once it is on screen."""
    (node,) = wait_until(lambda: env.ui_tree().find(resource_id), what=resource_id)
    x, y = node.center
    assert env.execute(Tap(x=x, y=y)).ok


@pytest.fixture
def notes(env):
    """The Notes editor, focused and empty."""
    env.shell("vphone reset com.vlagent.notes")
    assert env.execute(OpenApp(app="com.vlagent.notes")).ok
    tap_id(env, "notes:body")
    return env


def test_screen_facts_and_observation(env):
    assert (env.screen.width, env.screen.height, env.screen.density, env.screen.rotation) == (
        1080, 2400, 480, 0)
    env.execute(Home())
    obs = env.observe()
    assert obs.size == (1080, 2400) and obs.image.mode == "RGB"
    assert obs.extras["foreground"] == "com.vlagent.launcher"
    assert obs.extras["serial"] == env.serial
    # The raw frame and the PNG fallback agree pixel for pixel.
    assert env.capture().tobytes() == env.capture_png().tobytes()


FIXED_TEXTS = ["a b", "it's", '"q"', "`id`", "a;b|c&d", "100%s", "*?~#", "\n", "\\n",
               "日本語 ✓", "  two  spaces ", "%", "50% s", "tab\tand\nnewline"]


@pytest.mark.parametrize("text", FIXED_TEXTS)
def test_typing_arrives_exactly(notes, text):
    assert notes.execute(Type(text=text)).ok
    assert state(notes, "com.vlagent.notes")["draft"] == text


def test_a_control_character_typed_leaves_a_screen_to_read(notes):
    """XML has no place for most control characters: the dump shows "?" for each, as
    uiautomator does, and the text itself arrives exactly."""
    text = "form\x0cfeed\x01!"
    assert notes.execute(Type(text=text)).ok
    assert state(notes, "com.vlagent.notes")["draft"] == text
    (body,) = notes.ui_tree().find("notes:body")
    assert body.text == "form?feed?!"


def test_a_line_break_is_typed_once(notes):
    # "\r\n" is one line break, and so is a lone "\r" (as the browser and the desktop type them).
    assert notes.execute(Type(text="a\r\nb\rc\n")).ok
    assert state(notes, "com.vlagent.notes")["draft"] == "a\nb\nc\n"


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("seed", [0, 3])
def test_a_line_break_at_the_end_submits_a_one_line_field(env, seed, ending):
    """UI-TARS's phone prompt says a "\\n" at the end of typed text submits it: the line break
    is the Enter key a keyboard sends (Messages sends), not a character the field drops."""
    from tasks.phone.messages import open_thread
    from tasks.registry import get_task

    task = get_task("phone/send-message", seed=seed)
    env.reset(task.initialize)
    assert env.execute(OpenApp(app="Messages")).ok
    for step in open_thread(env, task.params["contact"]):
        assert env.execute(step.action).ok
    tap_id(env, "messages:input")
    assert env.execute(Type(text=task.params["text"] + ending)).ok
    wait_until(lambda: task.check(env, None).success, what="the message sent")


def test_typing_runs_nothing(notes, tmp_path):
    target = tmp_path / "pwned"
    for text in (f"$(touch {target})", f"`touch {target}`", f"; touch {target}",
                 f"$(touch {target}) 日本"):
        notes.shell("am broadcast -a ADB_CLEAR_TEXT")
        assert notes.execute(Type(text=text)).ok
        assert state(notes, "com.vlagent.notes")["draft"] == text
    assert not target.exists()


# Printable ASCII (shell metacharacters, quotes, %), whitespace and a spread of unicode.
ALPHABET = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.sampled_from([*"\n\t%$`'\"\\;|&<>(){}[]*?~#!", "%s",
                     "é", "ß", "日", "本", "✓", "😀", "ж"]),
    st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")),
)


@pytest.fixture
def typed_so_far():
    """What the Notes draft should hold, carried across hypothesis examples."""
    return {"draft": ""}


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.lists(ALPHABET, min_size=1, max_size=12).map("".join))
def test_typing_round_trip_property(notes, typed_so_far, text):
    # Examples append to one draft (one shell call per check keeps 200 examples fast); the field
    # is cleared whenever it grows long.
    if len(typed_so_far["draft"]) > 300:
        notes.shell("am broadcast -a ADB_CLEAR_TEXT")
        typed_so_far["draft"] = ""
    expected = typed_so_far["draft"] + text
    assert notes.execute(Type(text=text)).ok
    draft = state(notes, "com.vlagent.notes")["draft"]
    typed_so_far["draft"] = draft
    assert draft == expected


def test_typing_makes_adb_keyboard_active_each_time_and_close_gives_the_old_one_back(attached):
    """The keyboard may change under a run (the person, the system, the agent in Settings):
    ADBKeyboard's text would then go nowhere. The phone gets back the keyboard it had."""
    from envs.android import ADB_KEYBOARD, AndroidEnv
    from envs.virtual_phone.adb_host import connected_phone

    latin = "com.vlagent.keyboard/.LatinIME"
    _, adb = attached
    with connected_phone(adb) as (phone, _):
        with AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
            env.shell(f"ime set {latin}")
            env.execute(OpenApp(app="Notes"))
            tap_id(env, "notes:body")
            assert env.execute(Type(text="\u00e91")).ok
            env.shell(f"ime set {latin}")  # switched back while the run goes on
            assert env.execute(Type(text="\u00fc2")).ok
            assert state(env, "com.vlagent.notes")["draft"] == "\u00e91\u00fc2"
            assert ADB_KEYBOARD in env.shell("dumpsys input_method")
        assert f"mCurMethodId={latin}" in env.shell("dumpsys input_method")
        adb.run("disconnect", phone.serial)


def test_missing_adb_keyboard_is_a_clear_error(attached):
    from envs.android import AndroidEnv
    from envs.virtual_phone.adb_host import connected_phone

    _, adb = attached
    with connected_phone(adb, adb_keyboard=False) as (phone, _), \
            AndroidEnv(serial=phone.serial, adb_port=adb.port) as env:
        env.execute(OpenApp(app="Notes"))
        tap_id(env, "notes:body")
        result = env.execute(Type(text="héllo"))
        assert not result.ok
        assert "ADBKeyboard" in result.message and "5 characters" in result.message
        assert "héllo" not in result.message  # the text may hold a secret's value
        # Nothing was typed: no silent partial text.
        assert state(env, "com.vlagent.notes")["draft"] == ""
        assert env.execute(Type(text="plain ascii")).ok
        assert state(env, "com.vlagent.notes")["draft"] == "plain ascii"
        # A line break is an Enter key press, which needs no ADBKeyboard.
        assert env.execute(Type(text="\ntwo\r\nlines\n")).ok
        assert state(env, "com.vlagent.notes")["draft"] == "plain ascii\ntwo\nlines\n"
        adb.run("disconnect", phone.serial)


def test_book_a_flight_end_to_end(env):
    env.shell("vphone reset")
    assert env.execute(OpenApp(app="Flights")).ok
    wait_until(lambda: env.foreground()[0] == "com.vlagent.flights", what="flights")
    for field, value in [("origin", "SFO"), ("destination", "JFK"), ("date", "2026-12-01")]:
        tap_id(env, f"flights:{field}")
        assert env.execute(Type(text=value)).ok
    assert env.execute(Enter()).ok  # the IME's Enter submits the search form
    tap_id(env, "flights:result-VA123")
    tap_id(env, "flights:passenger")
    assert env.execute(Type(text="Ada Lovelace")).ok
    tap_id(env, "flights:confirm")
    wait_until(lambda: any("Booked VA123" in n.text for n in env.ui_tree().walk()),
             what="the confirmation")
    assert state(env, "com.vlagent.flights")["bookings"] == [{
        "flight": "VA123", "origin": "SFO", "destination": "JFK", "date": "2026-12-01",
        "passenger": "Ada Lovelace"}]
    # Back walks the app's pages (confirmation -> details), Home leaves the app.
    assert env.execute(Back()).ok
    wait_until(lambda: env.ui_tree().find("flights:confirm"),
             what="the detail page")
    assert env.execute(Key(key="home")).ok
    assert env.observe().extras["foreground"] == "com.vlagent.launcher"


def test_scroll_moves_long_content(env):
    env.shell("vphone reset; am start -n com.vlagent.notes/.NotesActivity")
    tap_id(env, "notes:body")
    lines = "\n".join(f"line {i}" for i in range(60))  # a saved note taller than the screen
    assert env.execute(Type(text=lines)).ok
    tap_id(env, "notes:save")
    wait_until(lambda: state(env, "com.vlagent.notes")["notes"] == [lines], what="the saved note")
    before = env.observe().image
    assert env.execute(Scroll(direction="down")).ok
    after = env.observe().image
    assert before.tobytes() != after.tobytes()
    assert env.execute(Swipe(x=540, y=600, x2=540, y2=2300)).ok  # finger down: back to the top
    assert env.observe().image.tobytes() == before.tobytes()


def test_a_scroll_at_a_point_scrolls_what_is_under_it(env):
    """The Notes text area is shorter than the default scroll (half the screen): a swipe
    centred on its middle would go down below it, and scroll nothing."""
    from tasks.phone.device import set_app_state

    env.shell("vphone reset")
    set_app_state(env, "com.vlagent.notes",
                  {"notes": [], "draft": "\n".join(f"line {i}" for i in range(80))})
    assert env.execute(OpenApp(app="Notes")).ok
    (body,) = wait_until(lambda: env.ui_tree().find("notes:body"), what="the text area")
    x, y = body.center

    def text_area():
        return env.observe().image.crop(body.bounds).tobytes()

    before = text_area()
    assert env.execute(Scroll(direction="down", x=x, y=y)).ok
    assert text_area() != before


def test_a_tap_acts_on_what_the_screenshot_shows_at_its_pixel(env):
    """One physical pixel left of a button's edge is background in the screenshot, and a tap
    there presses nothing (at 3 physical pixels per CSS pixel, two such pixels used to)."""
    env.shell("vphone reset")
    assert env.execute(OpenApp(app="Contacts")).ok
    (add,) = wait_until(lambda: env.ui_tree().find("contacts:add"), what="the add button")
    left, top, _, bottom = add.bounds
    middle = (top + bottom) // 2
    for outside in (left - 1, left - 2):
        assert env.execute(Tap(x=outside, y=middle)).ok
        assert not env.ui_tree().find("contacts:new-name")
    assert env.execute(Tap(x=left, y=middle)).ok
    wait_until(lambda: env.ui_tree().find("contacts:new-name"), what="the new contact form")


def test_a_tap_off_the_screenshot_is_refused(env):
    """`input tap` would take it and press nothing; the result said it was done."""
    env.shell("vphone reset")
    assert env.execute(OpenApp(app="Contacts")).ok
    env.observe()
    for action in (Tap(x=1080, y=1200), Swipe(x=500, y=1200, x2=500, y2=2400)):
        result = env.execute(action)
        assert not result.ok and "outside the 1080x2400 screen" in result.message


def test_open_app_by_package_and_by_icon_label(env, monkeypatch):
    assert env.execute(OpenApp(app="com.vlagent.contacts")).ok
    wait_until(lambda: env.foreground()[0] == "com.vlagent.contacts", what="contacts")
    # Where package names say nothing of the label, the home screen's icon is tapped.
    monkeypatch.setattr(env, "packages", lambda: ["com.example.other"])
    result = env.execute(OpenApp(app="messages"))
    assert result.ok and "home screen" in result.message
    wait_until(lambda: env.foreground()[0] == "com.vlagent.messages", what="messages")


def test_keys_reach_the_focused_field(notes):
    for key in ("A", "7", "/", "space", "KEYCODE_B", "backspace", "enter", "z"):
        assert notes.execute(Key(key=key)).ok, key
    assert state(notes, "com.vlagent.notes")["draft"] == "A7/ \nz"


def test_keys_in_adbs_keyevent_syntax(notes):
    """adb's names without KEYCODE_ ("DEL" is backspace there) and its numbers ("62": space)."""
    assert notes.execute(Type(text="abc")).ok
    for key in ("DEL", "62", "SPACE", "z"):
        result = notes.execute(Key(key=key))
        assert result.ok, result.message
    assert state(notes, "com.vlagent.notes")["draft"] == "ab  z"
    result = notes.execute(Key(key="clear"))
    assert result.ok and result.message == "pressed KEYCODE_CLEAR"


def test_open_app_errors_and_unknown_keys(env):
    result = env.execute(OpenApp(app="Definitely Not An App"))
    assert not result.ok and "no app called 'Definitely Not An App'" in result.message
    result = env.execute(Key(key="hyperdrive"))
    assert not result.ok and "unknown key" in result.message


def test_a_press_longer_than_the_adb_timeout_is_waited_for(attached):
    from envs.android import AndroidEnv

    phone, adb = attached
    with AndroidEnv(serial=phone.serial, adb_port=adb.port, timeout_s=1.0) as env:
        for action in (LongPress(x=540, y=1200, duration_ms=2500),
                       Swipe(x=540, y=1800, x2=540, y2=600, duration_ms=2500)):
            result = env.execute(action)
            assert result.ok, result.message


def test_device_selection_errors(attached):
    from envs.android import AndroidEnv
    from envs.virtual_phone import VirtualPhone
    from envs.virtual_phone.adb_host import PrivateAdbServer, free_port

    phone, adb = attached
    nobody = free_port()
    with pytest.raises(EnvError, match=f"cannot reach the adb server at 127.0.0.1:{nobody}"):
        AndroidEnv(adb_port=nobody)
    with PrivateAdbServer() as empty:
        with pytest.raises(EnvError, match="no Android device is attached.*device virtual"):
            AndroidEnv(adb_port=empty.port)
    with pytest.raises(EnvError, match="not attached"):
        AndroidEnv(serial="127.0.0.1:1", adb_port=adb.port)
    with VirtualPhone() as other:
        adb.connect(other.serial)
        with pytest.raises(EnvError, match="several devices") as error:
            AndroidEnv(adb_port=adb.port)
        assert phone.serial in str(error.value) and other.serial in str(error.value)
        adb.run("disconnect", other.serial)


def test_disconnect_fails_fast_with_a_clear_error(attached):
    from envs.android import AndroidEnv
    from envs.virtual_phone.adb_host import connected_phone

    _, adb = attached
    with connected_phone(adb) as (phone, _):
        env = AndroidEnv(serial=phone.serial, adb_port=adb.port)
        assert env.observe().size == (1080, 2400)
        phone.stop()
        start = time.monotonic()
        with pytest.raises(EnvError, match="not reachable"):
            env.observe()
        result = env.execute(Tap(x=10, y=10))
        assert time.monotonic() - start < 10
        assert not result.ok and phone.serial in result.message
    adb.run("disconnect", phone.serial)


def test_still_frames_see_what_compared_frames_see(attached, env):
    import io

    from PIL import Image

    from envs.android import AndroidEnv

    phone, adb = attached
    assert env.still_frames  # the virtual phone offers them
    env.execute(Home())
    with AndroidEnv(serial=phone.serial, adb_port=adb.port, still_frames=False) as generic:
        assert not generic.still_frames
        still, compared = env.observe(), generic.observe()
    assert still.extras["settled"] and compared.extras["settled"]
    assert still.extras["foreground"] == compared.extras["foreground"] == "com.vlagent.launcher"
    assert still.image.tobytes() == compared.image.tobytes()
    assert compared.png is None
    assert Image.open(io.BytesIO(still.png)).tobytes() == still.image.tobytes()
    # An unchanged screen comes again without a new frame, and a changed one with its own.
    again = env.observe()
    assert again.png is still.png and again.image.tobytes() == still.image.tobytes()
    assert env.execute(OpenApp(app="com.vlagent.notes")).ok
    opened = env.observe()
    assert opened.extras["foreground"] == "com.vlagent.notes" and opened.png != still.png


def test_a_private_adb_server_whose_port_was_taken_moves_to_another():
    """Two bench workers can draw the same free port before either adb binds it: the one that
    loses moves to another port instead of failing its episode."""
    from envs.virtual_phone.adb_host import PrivateAdbServer

    require_tool("adb")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = PrivateAdbServer()
        server.port = taken.getsockname()[1]
        with server.launch().wait_ready():
            assert server.port != taken.getsockname()[1]
            assert server.run("devices").returncode == 0
