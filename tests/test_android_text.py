"""Pure checks of the Android typing rules and the ADB packet format (no device needed)."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from envs.input_text import decode_input_text, input_text_argument
from envs.virtual_phone.protocol import (
    A_CNXN,
    A_WRTE,
    HEADER,
    Packet,
    ProtocolError,
    checksum,
    decode_header,
)


@pytest.mark.parametrize(
    ("argument", "typed"),
    [("a%sb", "a b"), ("100%", "100%"), ("%%s", "% "), ("50%%", "50%%"), ("%s%s", "  "),
     ("%d", "%d"), ("", "")],
)
def test_decode_follows_android_input_text(argument, typed):
    # Android's Input.sendText: "%s" becomes a space, any other "%" stays as it is.
    assert decode_input_text(argument) == typed


@pytest.mark.parametrize("text", ["a b", "it's", '"q"', "$(touch x)", "`id`", "a;b|c&d",
                                  "*?~#", "% x", "100%"])
def test_input_text_carries_shell_metacharacters(text):
    argument = input_text_argument(text)
    assert argument is not None and " " not in argument
    assert decode_input_text(argument) == text


@pytest.mark.parametrize("text", ["100%s", "a\nb", "tab\there", "日本語 ✓", "é"])
def test_input_text_refuses_what_it_cannot_carry(text):
    assert input_text_argument(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
def test_quoted_argument_reaches_the_command_unchanged(text):
    # What a device's /bin/sh hands `input text` after our quoting, checked with a real sh.
    argument = input_text_argument(text)
    if argument is None:
        assert "%s" in text  # the one printable-ASCII text it cannot carry: a literal "%s"
        return
    out = subprocess.run(["/bin/sh", "-c", "printf %s " + shlex.quote(argument)],
                         capture_output=True, text=True, check=True).stdout
    assert decode_input_text(out) == text


def test_packet_round_trip_and_magic():
    packet = Packet(A_WRTE, 3, 7, b"hello")
    raw = packet.encode()
    command, arg0, arg1, length, crc = decode_header(raw[: HEADER.size])
    assert (command, arg0, arg1, length) == (A_WRTE, 3, 7, 5)
    assert crc == checksum(b"hello") == sum(b"hello")
    assert raw[HEADER.size:] == b"hello"
    assert int.from_bytes(raw[20:24], "little") == A_WRTE ^ 0xFFFFFFFF
    assert raw[:4] == b"WRTE"  # commands spell their name in little-endian ASCII
    assert Packet(A_CNXN, 0, 0).encode()[:4] == b"CNXN"
    # Hosts of A_VERSION or later skip the checksum, and adbd sends 0 to them.
    assert decode_header(packet.encode(with_checksum=False)[: HEADER.size])[4] == 0


def test_bad_magic_is_refused():
    raw = bytearray(Packet(A_WRTE, 1, 2, b"x").encode())
    raw[20] ^= 1
    with pytest.raises(ProtocolError):
        decode_header(bytes(raw[: HEADER.size]))


# -- AndroidEnv's typing on a fake adb device ---------------------------------------------------
# Texts a secret could be: spaces (`input text` writes them "%s"), quotes and backslashes (shell
# quoting and repr escape them), longer than the 40 characters an error once quoted, non-ASCII
# and line breaks (base64 through ADBKeyboard).
SECRET_LIKE = ["Zq9 xW7 vK4 mP2", "pa\\ss'wo\"rd Qx", "x" * 34 + "Hunt3r2Hunt3r2",
               "Gr\u00fc\u00dfe \u65e5\u672c Qz8", "Kj5\nLm6\tNp7", "Rt4%Yu7 Io9" * 30]


def _windows(text: str, size: int = 6) -> set[str]:
    return {text[i:i + size] for i in range(max(1, len(text) - size + 1))}


def _typing_failure(kind: str):
    def fail(command: str):
        if not command.startswith(("input text", "am broadcast")):
            return None
        if kind == "gone":  # a message quoting the command, escaped
            return ConnectionResetError(f"device offline while running {command!r}")
        if kind == "adbutils":  # adbutils' own, when the output ends early (its str: a tuple)
            from adbutils import AdbError

            return AdbError("shell output invalid", command + "; echo X4EXIT:$?", b"")
        return 1, f"Exception occurred while executing: {command}\n  at {command[:30]}"
    return fail


@pytest.mark.parametrize("adb_keyboard", [True, False], ids=["adbkeyboard", "no-adbkeyboard"])
@pytest.mark.parametrize("failure", ["gone", "adbutils", "exit"])
@pytest.mark.parametrize("text", SECRET_LIKE)
def test_typing_errors_never_show_the_text_or_its_command(text, failure, adb_keyboard):
    from core.actions import Type
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    device = FakeAdbDevice(adb_keyboard=adb_keyboard, fail=_typing_failure(failure))
    result = fake_android_env(device).execute(Type(text=text))
    assert not result.ok
    assert f"{len(text)} characters" in result.message  # says what failed, by its length
    # Neither the text nor what carried it shows, whole or in part: every 6-character piece of
    # the text and of each typing command's argument (as sent: %s, quoted, base64).
    arguments = [c.split(" ", 2)[2] if c.startswith("input") else c.rsplit(" ", 1)[1]
                 for c in device.typing_commands()]
    for shown in (text, *arguments):
        leaked = sorted(w for w in _windows(shown) if w in result.message)
        assert not leaked, (leaked, result.message)


@pytest.mark.parametrize(("text", "typed"), [
    ("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("a\r\r\nb\n\rc", "a\n\nb\n\nc"), ("\r\n", "\n"),
    ("\u65e5\r\n\u672c", "\u65e5\n\u672c"), ("no breaks", "no breaks"),
])
def test_a_line_break_is_typed_once_whichever_way_it_is_written(text, typed):
    # "\r\n" is one line break, and so is a lone "\r": as the browser and the desktop type them.
    from core.actions import Type
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    device = FakeAdbDevice(adb_keyboard=True)
    assert fake_android_env(device).execute(Type(text=text)).ok
    assert device.typed() == typed


def test_what_was_typed_is_said_by_its_length_in_good_english():
    from core.actions import Type
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    env = fake_android_env(FakeAdbDevice(adb_keyboard=False))
    assert env.execute(Type(text="a")).message == "typed 1 character"  # not "1 characters"
    assert env.execute(Type(text="ab")).message == "typed 2 characters"


def test_a_phone_turned_to_landscape_is_scrolled_on_its_landscape_screen():
    from core.actions import Scroll
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    device = FakeAdbDevice()
    env = fake_android_env(device)  # attached in portrait, 1080x2400
    device.rotation = 1
    env.capture = lambda: Image.new("RGB", (2400, 1080))  # an app turned the phone
    observation = env.observe()
    assert observation.extras["rotation"] == 1 and observation.size == (2400, 1080)
    assert (env.screen.width, env.screen.height) == (2400, 1080)
    assert env.execute(Scroll(direction="down")).ok
    assert device.commands[-1] == "input swipe 1200 810 1200 270 300"  # inside 2400x1080
    assert env.execute(Scroll(direction="down", x=2000, y=500, amount=400)).ok
    assert device.commands[-1] == "input swipe 2000 500 2000 100 300"


@pytest.mark.parametrize(("scroll", "swipe"), [
    # At a point the finger goes down there: the view under the first touch is what scrolls.
    ({"direction": "down", "x": 540, "y": 683}, "540 683 540 1"),
    ({"direction": "up", "x": 540, "y": 683}, "540 683 540 1883"),
    ({"direction": "right", "x": 900, "y": 700, "amount": 300}, "900 700 600 700"),
    ({"direction": "left", "x": 900, "y": 700, "amount": 300}, "900 700 1078 700"),
    # At the edge it moves towards, the finger starts back from the point: never a tap.
    ({"direction": "down", "x": 540, "y": 5}, "540 241 540 1"),
    ({"direction": "up", "x": 540, "y": 2390}, "540 2158 540 2398"),
    # The finger never goes down in an edge band (1/12 of the side): a swipe from there is the
    # system's gesture (home, back, the notification shade), not a scroll.
    ({"direction": "right", "x": 3, "y": 700, "amount": 50}, "90 700 40 700"),
    ({"direction": "down", "x": 5, "y": 1200}, "90 1200 90 1"),
    ({"direction": "left", "x": 500, "y": 2395, "amount": 100}, "500 2199 600 2199"),
    # Without one the swipe is centred on the screen, its whole amount.
    ({"direction": "down"}, "540 1800 540 600"),
    ({"direction": "left", "amount": 200}, "440 1200 640 1200"),
    # A screen or more: from the inner side of the bottom band, not the bottom edge (home).
    ({"direction": "down", "amount": 3000}, "540 2199 540 1"),
    ({"direction": "up", "amount": 3000}, "540 200 540 2398"),
])
def test_a_scroll_swipes_from_its_point(scroll, swipe):
    from core.actions import Scroll
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    device = FakeAdbDevice()  # 1080x2400
    env = fake_android_env(device)
    result = env.execute(Scroll(**scroll))
    assert result.ok and device.commands[-1] == f"input swipe {swipe} 300"
    x1, y1, x2, y2 = map(int, swipe.split())
    moved = abs(x2 - x1) + abs(y2 - y1)
    asked = scroll.get("amount") or (2400 if scroll["direction"] in ("up", "down") else 1080) // 2
    # The model reads how far, as a share: its own distances are in another space than pixels.
    assert result.message == (f"scrolled {scroll['direction']}" if moved >= asked else
                              f"scrolled {scroll['direction']} {100 * moved // asked}% of the "
                              "way asked: the screen's edge was nearer")


def test_the_feedback_of_a_pointer_action_holds_no_screenshot_pixels():
    """A model that wrote (182, 318) on a 0-1000 grid, or in a resized screenshot's pixels,
    read back "tapped (197, 763)": a point in a space its prompt never describes."""
    from core.actions import LongPress, Swipe, Tap
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    env = fake_android_env(FakeAdbDevice())
    for action, said in [(Tap(x=197, y=763), "tapped"),
                         (LongPress(x=197, y=763, duration_ms=800), "long-pressed for 800 ms"),
                         (Swipe(x=197, y=763, x2=197, y2=100), "swiped")]:
        assert env.execute(action).message == said


def test_text_for_adbkeyboard_is_addressed_to_it_alone():
    """An implicit broadcast reaches every app that listens for its action; what ADBKeyboard
    types (a secret, say) goes to ADBKeyboard's package only."""
    from core.actions import Type
    from tests.adb_fakes import FakeAdbDevice, fake_android_env

    device = FakeAdbDevice(adb_keyboard=True)
    assert fake_android_env(device).execute(Type(text="p\u00e4ssword")).ok
    [command] = [c for c in device.typing_commands() if c.startswith("am broadcast")]
    assert shlex.split(command)[:4] == ["am", "broadcast", "-p", "com.android.adbkeyboard"]
    assert device.typed() == "p\u00e4ssword"
