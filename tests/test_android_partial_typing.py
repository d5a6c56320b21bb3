"""A long text that the phone stops typing partway: the failure says how much of it arrived.

The android env types plain ASCII in pieces of ``INPUT_TEXT_CHUNK`` characters, one ``input
text`` each. When a later piece fails (the device went away, or the command failed), the earlier
pieces are already in the field. A message that said only "typing N characters failed" made the
model type the whole text again, so the field held its first part twice.
"""

from __future__ import annotations

import re
import shlex

import pytest

from core.actions import Type
from envs.input_text import decode_input_text
from tests.adb_fakes import FakeAdbDevice, fake_android_env

#: 450 characters of printable ASCII with spaces: three `input text` pieces.
TEXT = "".join(f"word{i:03d} " for i in range(60))[:450]


def _failing_piece(number: int, kind: str):
    """Fail the ``number``-th (1-based) `input text` command, as ``kind`` fails it."""
    seen = {"n": 0}

    def fail(command: str):
        if not command.startswith("input text"):
            return None
        seen["n"] += 1
        if seen["n"] != number:
            return None
        if kind == "gone":
            return ConnectionResetError("device offline")
        return 1, "Error: the input command failed"
    return fail


def _arrived(device: FakeAdbDevice, failed: int) -> str:
    """What the `input text` commands that ran (all but the ``failed``-th) typed."""
    pieces = [c for c in device.commands if c.startswith("input text")]
    return "".join(decode_input_text(shlex.split(c)[2])
                   for n, c in enumerate(pieces, 1) if n != failed)


@pytest.mark.parametrize("kind", ["gone", "exit"])
@pytest.mark.parametrize("failed", [2, 3])
def test_a_piece_that_fails_after_others_were_typed_says_how_many_arrived(failed, kind):
    device = FakeAdbDevice(adb_keyboard=False, fail=_failing_piece(failed, kind))
    result = fake_android_env(device).execute(Type(text=TEXT))
    assert not result.ok
    arrived = _arrived(device, failed)
    assert arrived and TEXT.startswith(arrived)  # the field holds the text's first part
    # The model is told that part is typed, by its length (never by its text: it may be secret).
    assert re.search(rf"\b{len(arrived)}\b", result.message), result.message
    assert "typed" in result.message.split("failed", 1)[1], result.message
    assert arrived[:20] not in result.message and TEXT[-20:] not in result.message
    # Nothing after the failed piece was tried: no gap in what arrived.
    assert len([c for c in device.commands if c.startswith("input text")]) == failed


def test_a_first_piece_that_fails_claims_nothing_typed():
    device = FakeAdbDevice(adb_keyboard=False, fail=_failing_piece(1, "gone"))
    result = fake_android_env(device).execute(Type(text=TEXT))
    assert not result.ok and "450 characters" in result.message
    assert not re.search(r"\b(200|400)\b", result.message), result.message


def test_a_line_that_fails_after_an_enter_counts_the_line_break_as_typed():
    """A line break is an Enter key press between the lines' `input text`s: when the second
    line fails, the first line and its Enter are in the field."""
    device = FakeAdbDevice(adb_keyboard=False, fail=_failing_piece(2, "gone"))
    result = fake_android_env(device).execute(Type(text="first line\nsecond"))
    assert not result.ok
    assert [c.split()[:2] for c in device.commands if c.startswith("input")] == [
        ["input", "text"], ["input", "keyevent"], ["input", "text"]]  # the last one failed
    assert "the first 11 of the 17 characters had been typed" in result.message, result.message
