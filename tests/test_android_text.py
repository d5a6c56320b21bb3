"""Pure checks of the Android typing rules and the ADB packet format (no device needed)."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
